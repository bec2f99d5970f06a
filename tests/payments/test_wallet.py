"""Venice's wallet credits: top up with an x402 payment, sign in with Sign-In-With-X, spend
like an API key's balance, 402 with top-up instructions when the credit runs out."""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from eth_account.messages import encode_defunct
from x402.http.utils import decode_payment_response_header
from x402.schemas import PaymentRequired, ResourceInfo

from murano.accounts.base import Admission, Outcome
from murano.errors import AuthenticationFailed, RateLimited
from murano.payments import MemoryWalletLedger, TopUpRejected, X402Gate
from tests.payments.chain import FakeUsdc
from tests.payments.conftest import (
    ORIGIN,
    PATH,
    SELLER,
    Buyer,
    admit,
    challenge,
    charge,
    request,
    required_of,
)
from tests.payments.facilitator import NETWORK, LocalFacilitator

TOP_UP = ResourceInfo(url=ORIGIN + "/api/v1/x402/top-up", mime_type="application/json")


async def top_up(gate: X402Gate, buyer: Buyer, usd: str = "5") -> str:
    """Buy `usd` of credit; the payment header used."""
    assert gate.top_ups is not None
    required = await gate.top_ups.payment_required(Decimal(usd), TOP_UP)
    header = await buyer.pay(required)
    await gate.top_ups.top_up(header, TOP_UP)
    return header


async def signed_in(gate: X402Gate, buyer: Buyer) -> str:
    """A fresh SIGN-IN-WITH-X header, answering the challenge of a 402."""
    error = await challenge(gate)
    return await buyer.sign_in(error.body["extensions"]["sign-in-with-x"])


async def test_the_top_up_402_quotes_the_minimum_by_default(wallet_gate: X402Gate) -> None:
    assert wallet_gate.top_ups is not None
    required = await wallet_gate.top_ups.payment_required(wallet_gate.top_ups.quote(None), TOP_UP)

    [offer] = required.accepts
    assert (offer.amount, offer.pay_to, offer.network) == ("5000000", SELLER.address, NETWORK)
    with pytest.raises(TopUpRejected) as low:
        wallet_gate.top_ups.quote(Decimal("4.99"))
    assert low.value.code == "AMOUNT_TOO_LOW"


async def test_a_top_up_is_settled_and_credited_once(
    wallet_gate: X402Gate,
    ledger: MemoryWalletLedger,
    token: FakeUsdc,
    buyer: Buyer,
) -> None:
    assert wallet_gate.top_ups is not None
    required = await wallet_gate.top_ups.payment_required(Decimal("7.5"), TOP_UP)
    header = await buyer.pay(required)

    done = await wallet_gate.top_ups.top_up(header, TOP_UP)

    assert done.address == buyer.address.lower()
    assert done.credited_usd == done.balance_usd == Decimal("7.5")
    [transfer] = token.transfers
    assert transfer.value == 7_500_000 and done.payment_id == transfer.tx_hash
    assert decode_payment_response_header(done.headers["PAYMENT-RESPONSE"]).success
    with pytest.raises(TopUpRejected) as replay:
        await wallet_gate.top_ups.top_up(header, TOP_UP)
    assert (replay.value.code, replay.value.reason) == ("INVALID_PAYMENT", "payment_already_used")
    assert await ledger.available(buyer.address) == Decimal("7.5")
    assert len(token.transfers) == 1


async def test_a_top_up_below_the_minimum_is_refused_unsettled(
    wallet_gate: X402Gate, token: FakeUsdc, buyer: Buyer
) -> None:
    assert wallet_gate.top_ups is not None
    [terms] = (await wallet_gate.top_ups.payment_required(Decimal(5), TOP_UP)).accepts
    small = terms.model_copy(update={"amount": "1000000"})

    with pytest.raises(TopUpRejected) as caught:
        await wallet_gate.top_ups.top_up(buyer.sign(small), TOP_UP)

    assert caught.value.code == "AMOUNT_TOO_LOW"
    assert token.transfers == []


async def test_a_top_up_the_facilitator_rejects_credits_nothing(
    wallet_gate: X402Gate, ledger: MemoryWalletLedger, token: FakeUsdc
) -> None:
    broke = Buyer(token, usd_balance=1_000_000)

    with pytest.raises(TopUpRejected) as caught:
        await top_up(wallet_gate, broke, "5")

    assert caught.value.code == "PAYMENT_VERIFICATION_FAILED"
    assert caught.value.reason == "invalid_exact_evm_insufficient_balance"
    assert await ledger.available(broke.address) == 0


async def test_the_discovery_402_offers_sign_in_and_wallet_credits(wallet_gate: X402Gate) -> None:
    error = await challenge(wallet_gate)

    siwx = error.body["extensions"]["sign-in-with-x"]
    assert siwx["info"]["domain"] == "murano.test"
    assert siwx["info"]["uri"] == ORIGIN + PATH
    assert siwx["supportedChains"] == [{"chainId": NETWORK, "type": "eip191"}]
    assert error.body["authOptions"]["x402Wallet"] == {
        "header": "SIGN-IN-WITH-X",
        "legacyHeader": "X-Sign-In-With-X",
        "topUp": "POST /api/v1/x402/top-up",
        "docs": ORIGIN + "/docs",
    }
    again = await challenge(wallet_gate)
    assert again.body["extensions"]["sign-in-with-x"]["info"]["nonce"] != siwx["info"]["nonce"]


async def test_a_signed_in_wallet_pays_from_its_credit_only_for_delivered_images(
    wallet_gate: X402Gate, ledger: MemoryWalletLedger, token: FakeUsdc, buyer: Buyer
) -> None:
    await top_up(wallet_gate, buyer, "5")

    admission = await admit(
        wallet_gate, request(siwx=await signed_in(wallet_gate, buyer)), charge("0.02", 3)
    )
    assert admission.headers["x-venice-balance-usd"] == "5"
    assert admission.principal.name == buyer.address.lower()
    assert await ledger.available(buyer.address) == Decimal("4.94")  # held
    assert admission.settle_hook is not None
    await admission.settle_hook(Outcome.DELIVERED)
    assert admission.headers["X-Balance-Remaining"] == "4.940000"

    failed = await admit(
        wallet_gate, request(siwx=await signed_in(wallet_gate, buyer)), charge("0.02", 3)
    )
    assert failed.settle_hook is not None
    await failed.settle_hook(Outcome.FAILED)

    assert await ledger.available(buyer.address) == Decimal("4.94")
    assert len(token.transfers) == 1  # only the top-up touched the chain


async def test_an_empty_wallet_gets_venices_insufficient_balance_402(
    wallet_gate: X402Gate, buyer: Buyer
) -> None:
    error = await challenge(
        wallet_gate, charge("0.05", 2), request(siwx=await signed_in(wallet_gate, buyer))
    )

    body = error.body
    assert {k: body[k] for k in ("error", "code", "reason")} == {
        "error": "Payment required",
        "code": "PAYMENT_REQUIRED",
        "reason": "insufficient_balance",
    }
    assert body["currentBalanceUsd"] == 0 and body["minimumBalanceUsd"] == 0.1
    assert body["minimumTopUpUsd"] == 5 and body["suggestedTopUpUsd"] == 10
    assert body["supportedTokens"] == ["USDC"]
    assert body["supportedChains"] == ["base-sepolia"]
    instructions = body["topUpInstructions"]
    assert instructions["receiverWallet"] == SELLER.address
    assert instructions["tokenDecimals"] == 6 and instructions["network"] == NETWORK
    assert set(body["siwxChallenge"]["info"]) == {
        "domain",
        "uri",
        "version",
        "nonce",
        "issuedAt",
        "expirationTime",
        "statement",
    }
    assert body["siwxChallenge"]["supportedChains"] == [{"chainId": NETWORK, "type": "eip191"}]
    # The header still lets an x402 client pay for this one request instead.
    assert isinstance(required_of(error), PaymentRequired)
    assert required_of(error).accepts[0].amount == "100000"


async def test_a_sign_in_works_once(wallet_gate: X402Gate, buyer: Buyer) -> None:
    await top_up(wallet_gate, buyer)
    header = await signed_in(wallet_gate, buyer)
    first = await admit(wallet_gate, request(siwx=header))
    assert first.settle_hook is not None
    await first.settle_hook(Outcome.DELIVERED)

    with pytest.raises(AuthenticationFailed, match="already used"):
        await admit(wallet_gate, request(siwx=header))


async def test_a_sign_in_for_another_site_is_refused(wallet_gate: X402Gate, buyer: Buyer) -> None:
    error = await challenge(wallet_gate)
    elsewhere = dict(error.body["extensions"]["sign-in-with-x"])
    elsewhere["info"] = {**elsewhere["info"], "domain": "evil.test", "uri": "http://evil.test/x"}
    header = await buyer.sign_in(elsewhere, url="http://evil.test/x")

    with pytest.raises(AuthenticationFailed, match="Domain mismatch"):
        await admit(wallet_gate, request(siwx=header))


async def test_a_sign_in_signed_by_another_key_is_refused(
    wallet_gate: X402Gate, token: FakeUsdc, buyer: Buyer
) -> None:
    error = await challenge(wallet_gate)
    header = await buyer.sign_in(error.body["extensions"]["sign-in-with-x"])
    payload = json.loads(base64.b64decode(header))
    payload["address"] = Buyer(token).address  # claim someone else's wallet
    forged = base64.b64encode(json.dumps(payload).encode()).decode()

    with pytest.raises(AuthenticationFailed):
        await admit(wallet_gate, request(siwx=forged))


async def test_venices_own_sign_in_header_shape_is_accepted(
    wallet_gate: X402Gate, ledger: MemoryWalletLedger, buyer: Buyer
) -> None:
    await top_up(wallet_gate, buyer)
    now = datetime.now(UTC)
    message = (
        f"murano.test wants you to sign in with your Ethereum account:\n{buyer.address}\n\n"
        "Sign in to murano\n\n"
        f"URI: {ORIGIN}\nVersion: 1\nChain ID: 84532\nNonce: {secrets.token_hex(8)}\n"
        f"Issued At: {now.isoformat().replace('+00:00', 'Z')}\n"
        f"Expiration Time: {(now + timedelta(minutes=10)).isoformat().replace('+00:00', 'Z')}"
    )
    signature = buyer.account.sign_message(encode_defunct(text=message)).signature.hex()
    header = base64.b64encode(
        json.dumps(
            {
                "address": buyer.address,
                "message": message,
                "signature": "0x" + signature.removeprefix("0x"),
                "timestamp": int(time.time() * 1000),
                "chainId": 84532,
            }
        ).encode()
    ).decode()

    admission = await admit(wallet_gate, request(siwx=header))

    assert admission.principal.name == buyer.address.lower()
    assert admission.settle_hook is not None
    await admission.settle_hook(Outcome.DELIVERED)
    assert await ledger.available(buyer.address) == Decimal("4.99")


async def test_a_wallet_may_have_five_requests_in_flight(
    wallet_gate: X402Gate, buyer: Buyer
) -> None:
    await top_up(wallet_gate, buyer)
    running = [await admit(wallet_gate, request(siwx=await signed_in(wallet_gate, buyer)))]
    for _ in range(4):
        running.append(await admit(wallet_gate, request(siwx=await signed_in(wallet_gate, buyer))))

    with pytest.raises(RateLimited):
        await admit(wallet_gate, request(siwx=await signed_in(wallet_gate, buyer)))
    hook = running[0].settle_hook
    assert hook is not None
    await hook(Outcome.DELIVERED)
    await admit(wallet_gate, request(siwx=await signed_in(wallet_gate, buyer)))


async def test_without_a_wallet_ledger_sign_in_is_neither_offered_nor_taken(
    gate: X402Gate, buyer: Buyer, facilitator: LocalFacilitator
) -> None:
    error = await challenge(gate)
    assert "extensions" not in error.body
    assert gate.top_ups is None
    # A SIGN-IN-WITH-X header is ignored: the caller is asked to pay for the request.
    ignored = await challenge(gate, req=request(siwx="c2lnbmVkIGlu"))
    assert ignored.body["accepts"][0]["amount"] == "10000"


async def test_concurrent_sign_ins_cannot_overshoot_the_in_flight_limit(
    wallet_gate: X402Gate, buyer: Buyer
) -> None:
    await top_up(wallet_gate, buyer)
    headers = [await signed_in(wallet_gate, buyer) for _ in range(7)]

    results = await asyncio.gather(
        *(admit(wallet_gate, request(siwx=header)) for header in headers),
        return_exceptions=True,
    )

    assert sum(isinstance(r, RateLimited) for r in results) == 2
    assert sum(isinstance(r, Admission) for r in results) == 5
