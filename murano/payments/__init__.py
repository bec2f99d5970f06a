"""x402 payments: pay per request in USDC (`exact` scheme), or draw on wallet credits
bought with x402 top-ups and used with Sign-In-With-X, as Venice does.

    the route's Credentials (principal + X402Request) ──┐
    ImageService ── payment_gate(credentials, charge) ── X402Gate
                                                         ├── ExactPayments ── x402ResourceServer
                                                         │                    └── facilitator (HTTP)
                                                         ├── SignIn (x402 sign-in-with-x)
                                                         ├── WalletLedger (balances, in
                                                         │   the accounts database)
                                                         └── TopUps ── POST /api/v1/x402/top-up

Build one with `build_payment_gate(settings, wallets=build_wallet_ledger(settings, accounts))`;
see each module for the semantics.
"""

from murano.accounts.credentials import X402Request
from murano.payments.errors import PaymentRejected, PaymentServiceUnavailable
from murano.payments.exact import ExactPayments, VerifiedPayment
from murano.payments.factory import build_payment_gate
from murano.payments.gate import X402Gate
from murano.payments.nonces import MemoryNonces, Nonces, RedisNonces
from murano.payments.siwx import SignIn
from murano.payments.topup import TopUp, TopUpRejected, TopUps
from murano.payments.wallet import (
    AccountsWalletLedger,
    InsufficientWalletBalance,
    MemoryWalletLedger,
    WalletHold,
    WalletLedger,
    build_wallet_ledger,
    wallet_ledger_for,
)

__all__ = [
    "AccountsWalletLedger",
    "ExactPayments",
    "InsufficientWalletBalance",
    "MemoryNonces",
    "MemoryWalletLedger",
    "Nonces",
    "PaymentRejected",
    "PaymentServiceUnavailable",
    "RedisNonces",
    "SignIn",
    "TopUp",
    "TopUpRejected",
    "TopUps",
    "VerifiedPayment",
    "WalletHold",
    "WalletLedger",
    "X402Gate",
    "X402Request",
    "build_payment_gate",
    "build_wallet_ledger",
    "wallet_ledger_for",
]
