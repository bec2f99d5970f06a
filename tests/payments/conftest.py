"""Fixtures for the x402 tests: a local facilitator on a fake chain, payers built with the
x402 client SDK and `eth_account` keys, and gates built from settings the way the app does.
Wallet balances are kept in memory and in the accounts database (SQLite, PostgreSQL): every
test of wallet credits runs on each. Everything else is offline: the only sockets are on
127.0.0.1."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from x402 import x402Client
from x402.extensions.sign_in_with_x import encode_siwx_header
from x402.extensions.sign_in_with_x.client import create_siwx_payload
from x402.http.utils import (
    decode_payment_required_header,
    encode_payment_signature_header,
)
from x402.mechanisms.evm.exact import ExactEvmClientScheme
from x402.mechanisms.evm.exact.v1 import ExactEvmSchemeV1Client
from x402.mechanisms.evm.signers import EthAccountSigner
from x402.mechanisms.evm.types import ExactEIP3009Authorization, ExactEIP3009Payload
from x402.mechanisms.evm.utils import create_nonce
from x402.schemas import (
    PaymentPayload,
    PaymentRequired,
    PaymentRequiredV1,
    PaymentRequirements,
    PaymentRequirementsV1,
)

from murano.accounts.base import Admission, Charge, Principal
from murano.accounts.credentials import Credentials
from murano.errors import PaymentRequired as PaymentRequiredError
from murano.payments import (
    AccountsWalletLedger,
    MemoryWalletLedger,
    WalletLedger,
    X402Gate,
    X402Request,
    build_payment_gate,
)
from murano.payments.assets import legacy_network
from murano.settings import Settings
from tests.accounts.conftest import LEDGERS, make_database
from tests.payments.chain import FakeUsdc
from tests.payments.facilitator import NETWORK, LocalFacilitator

ORIGIN = "http://murano.test"
PATH = "/api/v1/image/generate"
# The seller's wallet (receives payments); a fixed key so failures are reproducible.
SELLER = Account.from_key("0x" + "11" * 32)
USDC = 1_000_000  # atomic units per USD
STARTING_BALANCE = 20 * USDC


def charge(usd: str = "0.01", images: int = 1) -> Charge:
    return Charge("test-model", images, Decimal(usd), "image/generate")


ANONYMOUS = Principal(key_id="", name="anonymous", anonymous=True)


def gate_settings(tmp_path: Path, facilitator_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": tmp_path,
        "accounts_backend": "static",
        "api_keys": ["test-key-0123456789"],
        "x402_pay_to": SELLER.address,
        "x402_networks": [NETWORK],
        "x402_facilitator_url": facilitator_url,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def token() -> FakeUsdc:
    return FakeUsdc()


@pytest.fixture
def facilitator(token: FakeUsdc) -> Iterator[LocalFacilitator]:
    local = LocalFacilitator(token).start()
    yield local
    local.stop()


class Buyer:
    """A wallet with an `eth_account` key that pays with the x402 client SDK."""

    def __init__(self, token: FakeUsdc, usd_balance: int = STARTING_BALANCE) -> None:
        self.account: LocalAccount = Account.create()
        token.mint(self.account.address, usd_balance)
        self.client = x402Client()
        self.client.register(NETWORK, ExactEvmClientScheme(self.account))
        self.client.register_v1(legacy_network(NETWORK) or "", ExactEvmSchemeV1Client(self.account))
        self.client.set_spend_controls(False)

    @property
    def address(self) -> str:
        return str(self.account.address)

    async def pay(self, required: PaymentRequired) -> str:
        """The PAYMENT-SIGNATURE header for a v2 challenge, as the SDK builds it."""
        payload = await self.client.create_payment_payload(required)
        return encode_payment_signature_header(payload)

    async def pay_v1(self, required: PaymentRequired) -> str:
        """The X-PAYMENT header of a v1 client for the same terms."""
        payload = await self.client.create_payment_payload(to_v1(required))
        return encode_payment_signature_header(payload)

    def sign(
        self,
        requirement: PaymentRequirements,
        *,
        value: str | None = None,
        to: str | None = None,
        valid_after: int = 0,
        valid_before: int | None = None,
        accepted: PaymentRequirements | None = None,
        signer: LocalAccount | None = None,
    ) -> str:
        """A hand-made v2 payment (to test what the SDK would never send)."""
        authorization = ExactEIP3009Authorization(
            from_address=self.address,
            to=to or requirement.pay_to,
            value=value or requirement.amount,
            valid_after=str(valid_after),
            valid_before=str(valid_before or int(time.time()) + requirement.max_timeout_seconds),
            nonce=create_nonce(),
        )
        scheme = ExactEvmClientScheme(EthAccountSigner(signer or self.account))
        signature = scheme._sign_authorization(authorization, requirement)
        inner = ExactEIP3009Payload(authorization=authorization, signature=signature)
        payload = PaymentPayload(payload=inner.to_dict(), accepted=accepted or requirement)
        return encode_payment_signature_header(payload)

    async def sign_in(self, challenge: dict[str, Any], url: str = ORIGIN + PATH) -> str:
        """A SIGN-IN-WITH-X header (x402's shape) answering a 402's challenge."""
        chain = challenge["supportedChains"][0]
        info = {**challenge["info"], "chainId": chain["chainId"], "type": chain["type"]}
        return encode_siwx_header(await create_siwx_payload(info, self.account, url))


def to_v1(required: PaymentRequired) -> PaymentRequiredV1:
    assert required.resource is not None
    accepts = [
        PaymentRequirementsV1(
            scheme=r.scheme,
            network=legacy_network(r.network) or r.network,
            max_amount_required=r.amount,
            resource=required.resource.url,
            description=required.resource.description,
            mime_type=required.resource.mime_type,
            pay_to=r.pay_to,
            max_timeout_seconds=r.max_timeout_seconds,
            asset=r.asset,
            extra=r.extra,
        )
        for r in required.accepts
    ]
    return PaymentRequiredV1(accepts=accepts)


@pytest.fixture
def buyer(token: FakeUsdc) -> Buyer:
    return Buyer(token)


@pytest.fixture
async def gate(tmp_path: Path, facilitator: LocalFacilitator) -> AsyncIterator[X402Gate]:
    built = build_payment_gate(gate_settings(tmp_path, facilitator.url), public_url=ORIGIN)
    assert built is not None
    yield built
    await built.close()


@pytest.fixture(params=LEDGERS)
async def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[WalletLedger]:
    """Wallet balances in memory, or in the accounts database as the server keeps them."""
    if request.param == "memory":
        yield MemoryWalletLedger()
        return
    async with make_database(request.param, tmp_path) as database:
        accounts = database.accounts()
        await accounts.start()
        try:
            yield AccountsWalletLedger(accounts)
        finally:
            await accounts.close()


@pytest.fixture
async def wallet_gate(
    tmp_path: Path, facilitator: LocalFacilitator, ledger: WalletLedger
) -> AsyncIterator[X402Gate]:
    built = build_payment_gate(
        gate_settings(tmp_path, facilitator.url), wallets=ledger, public_url=ORIGIN
    )
    assert built is not None
    yield built
    await built.close()


def request(
    *, payment: tuple[str, str] | None = None, siwx: str | None = None, path: str = PATH
) -> X402Request:
    return X402Request("POST", ORIGIN, path, payment=payment, siwx=siwx)


async def admit(gate: X402Gate, req: X402Request, what: Charge | None = None) -> Admission:
    return await gate(Credentials(ANONYMOUS, req), what or charge())


async def challenge(
    gate: X402Gate, what: Charge | None = None, req: X402Request | None = None
) -> PaymentRequiredError:
    """The 402 the gate answers a request without payment with."""
    with pytest.raises(PaymentRequiredError) as caught:
        await admit(gate, req or request(), what)
    return caught.value


def required_of(error: PaymentRequiredError) -> PaymentRequired:
    decoded = decode_payment_required_header(error.headers["PAYMENT-REQUIRED"])
    assert isinstance(decoded, PaymentRequired)
    return decoded


def decode_header(value: str) -> dict[str, Any]:
    decoded: dict[str, Any] = json.loads(base64.b64decode(value))
    return decoded
