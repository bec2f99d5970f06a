"""Venice's JSON bodies for x402 (`X402InferencePaymentRequired` and the top-up route), as
plain dicts built from x402's `PaymentRequired`. Field names and shapes follow Venice's
OpenAPI spec; where a value is Venice's own (URLs, chain names) murano says its own.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from x402.http.utils import encode_payment_required_header
from x402.schemas import PaymentRequired

from murano.payments.assets import Asset, legacy_network

__all__ = [
    "TOP_UP_ROUTE",
    "auth_options",
    "discovery_body",
    "payment_required_headers",
    "top_up_error",
    "top_up_success",
    "wallet_insufficient_body",
]

TOP_UP_ROUTE = "POST /api/v1/x402/top-up"


def payment_required_headers(required: PaymentRequired) -> dict[str, str]:
    """x402 v2's `PAYMENT-REQUIRED` header: the challenge, base64 JSON."""
    return {"PAYMENT-REQUIRED": encode_payment_required_header(required)}


def auth_options(origin: str, *, wallets: bool) -> dict[str, Any]:
    """How else to pay: an API key, or (when the wallet flow is on) wallet credits."""
    docs = f"{origin}/docs"
    options: dict[str, Any] = {
        "apiKey": {
            "header": "Authorization: Bearer YOUR_API_KEY",
            "getKey": "Ask this server's operator for a key (murano keys create)",
            "docs": docs,
        }
    }
    if wallets:
        options["x402Wallet"] = {
            "header": "SIGN-IN-WITH-X",
            "legacyHeader": "X-Sign-In-With-X",
            "topUp": TOP_UP_ROUTE,
            "docs": docs,
        }
    return options


def discovery_body(required: PaymentRequired, options: dict[str, Any]) -> dict[str, Any]:
    """Shape (a) of `X402InferencePaymentRequired`: x402's `PaymentRequired` (version,
    resource, accepts, error, extensions) plus `authOptions`."""
    body = required.model_dump(by_alias=True, exclude_none=True)
    body["authOptions"] = options
    return body


def wallet_insufficient_body(
    *,
    balance_usd: Decimal,
    needed_usd: Decimal,
    min_top_up_usd: Decimal,
    suggested_top_up_usd: Decimal,
    pay_to: str,
    assets: list[Asset],
    challenge: dict[str, Any],
    description: str,
) -> dict[str, Any]:
    """Shape (b): a signed-in wallet whose credit does not cover the request."""
    first = assets[0]
    return {
        "error": "Payment required",
        "code": "PAYMENT_REQUIRED",
        "reason": "insufficient_balance",
        "message": "Insufficient x402 balance",
        "currentBalanceUsd": float(balance_usd),
        "minimumBalanceUsd": float(needed_usd),
        "description": description,
        "suggestedTopUpUsd": float(suggested_top_up_usd),
        "minimumTopUpUsd": float(min_top_up_usd),
        "supportedTokens": sorted({asset.symbol for asset in assets}),
        "supportedChains": [legacy_network(asset.network) or asset.network for asset in assets],
        "topUpInstructions": {
            "step1": f"{TOP_UP_ROUTE} with no payment header to get payment requirements",
            "step2": "Choose a payment option from accepts and sign a USDC transfer "
            "authorization using the x402 SDK",
            "step3": f"{TOP_UP_ROUTE} with the signed PAYMENT-SIGNATURE header",
            "receiverWallet": pay_to,
            "tokenAddress": first.address,
            "tokenDecimals": first.decimals,
            "network": first.network,
            "minimumAmountUsd": float(min_top_up_usd),
        },
        "siwxChallenge": _siwx_challenge(challenge),
    }


def _siwx_challenge(challenge: dict[str, Any]) -> dict[str, Any]:
    """Venice's `siwxChallenge`: the x402 extension's info, cut to Venice's fields."""
    info = challenge.get("info", {})
    fields = ("domain", "uri", "version", "nonce", "issuedAt", "expirationTime", "statement")
    return {
        "info": {name: info[name] for name in fields if name in info},
        "supportedChains": [
            {"chainId": chain["chainId"], "type": chain["type"]}
            for chain in challenge.get("supportedChains", [])
        ],
    }


def top_up_success(
    address: str, credited_usd: Decimal, balance_usd: Decimal, payment_id: str
) -> dict[str, Any]:
    return {
        "success": True,
        "data": {
            "walletAddress": address,
            "amountCredited": float(credited_usd),
            "newBalance": float(balance_usd),
            "paymentId": payment_id,
        },
    }


def top_up_error(code: str, message: str, details: Any = None) -> dict[str, Any]:
    """The top-up route's errors: `{error: CODE, message, details?}`."""
    body: dict[str, Any] = {"error": code, "message": message}
    if details is not None:
        body["details"] = details
    return body
