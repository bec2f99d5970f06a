"""Pay per request with x402 `exact`, at the gate's interface: a `Charge` in, a 402 or an
`Admission` out, settlement by the admission's hook. Real signatures (x402 client SDK,
`eth_account`), a real x402 facilitator over HTTP, a fake chain."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from eth_account import Account
from x402.http.utils import decode_payment_response_header

from murano.accounts.base import Outcome
from murano.errors import PaymentRequired as PaymentRequiredError
from murano.payments import PaymentServiceUnavailable, X402Gate, build_payment_gate
from tests.payments.chain import BASE_SEPOLIA_USDC, FakeUsdc
from tests.payments.conftest import (
    ORIGIN,
    PATH,
    SELLER,
    STARTING_BALANCE,
    Buyer,
    admit,
    challenge,
    charge,
    decode_header,
    gate_settings,
    request,
    required_of,
)
from tests.payments.facilitator import NETWORK, LocalFacilitator


async def test_a_request_without_payment_is_asked_for_exactly_its_price(
    gate: X402Gate, facilitator: LocalFacilitator
) -> None:
    error = await challenge(gate, charge("0.01", images=3))

    body = error.body
    assert body["x402Version"] == 2
    assert body["error"] == "Payment required"
    assert body["resource"] == {
        "url": ORIGIN + PATH,
        "description": "murano image generation",
        "mimeType": "application/json",
    }
    [offer] = body["accepts"]
    assert offer == {
        "scheme": "exact",
        "network": NETWORK,
        "asset": BASE_SEPOLIA_USDC,
        "amount": "30000",  # 3 images x $0.01 in USDC's 6 decimals
        "payTo": SELLER.address,
        "maxTimeoutSeconds": 360,
        "extra": {"name": "USDC", "version": "2"},
    }
    assert body["authOptions"]["apiKey"]["header"] == "Authorization: Bearer YOUR_API_KEY"
    assert "x402Wallet" not in body["authOptions"]
    assert "extensions" not in body
    header = required_of(error)
    assert header.model_dump(by_alias=True, exclude_none=True)["accepts"] == [offer]
    assert "verify" not in facilitator.calls


async def test_v2_payment_is_verified_first_and_settled_only_after_delivery(
    gate: X402Gate, facilitator: LocalFacilitator, token: FakeUsdc, buyer: Buyer
) -> None:
    header = await buyer.pay(required_of(await challenge(gate)))

    admission = await admit(gate, request(payment=("payment-signature", header)))

    assert facilitator.calls.count("verify") == 1
    assert token.transfers == []
    assert admission.settle_hook is not None
    await admission.settle_hook(Outcome.DELIVERED)
    [transfer] = token.transfers
    assert (transfer.sender, transfer.to, transfer.value) == (
        buyer.address.lower(),
        SELLER.address.lower(),
        10_000,
    )
    assert token.balance_of(buyer.address) == STARTING_BALANCE - 10_000
    settled = decode_payment_response_header(admission.headers["PAYMENT-RESPONSE"])
    assert settled.success and settled.transaction == transfer.tx_hash
    assert settled.payer is not None and settled.payer.lower() == buyer.address.lower()
    assert "X-PAYMENT-RESPONSE" not in admission.headers


async def test_v1_payment_in_x_payment_gets_x_payment_response(
    gate: X402Gate, token: FakeUsdc, buyer: Buyer
) -> None:
    header = await buyer.pay_v1(required_of(await challenge(gate, charge("0.02", 2))))

    admission = await admit(gate, request(payment=("x-payment", header)), charge("0.02", 2))
    assert admission.settle_hook is not None
    await admission.settle_hook(Outcome.DELIVERED)

    [transfer] = token.transfers
    assert transfer.value == 40_000
    settled = decode_payment_response_header(admission.headers["X-PAYMENT-RESPONSE"])
    assert settled.success and settled.network == "base-sepolia"
    assert "PAYMENT-RESPONSE" not in admission.headers


async def test_a_payment_for_another_price_is_refused_before_the_facilitator(
    gate: X402Gate, facilitator: LocalFacilitator, buyer: Buyer
) -> None:
    cheaper = await buyer.pay(required_of(await challenge(gate, charge("0.01"))))

    error = await challenge(gate, charge("0.05"), request(payment=("payment-signature", cheaper)))

    assert "amount is 10000" in error.body["error"]
    assert "50000" in error.body["error"]
    assert required_of(error).accepts[0].amount == "50000"
    assert "verify" not in facilitator.calls


async def test_a_signed_amount_that_differs_from_the_echoed_terms_is_refused(
    gate: X402Gate, facilitator: LocalFacilitator, buyer: Buyer
) -> None:
    [terms] = required_of(await challenge(gate)).accepts
    header = buyer.sign(terms, value="1")

    error = await challenge(gate, req=request(payment=("payment-signature", header)))

    assert "is for 1 units of USDC" in error.body["error"]
    assert "verify" not in facilitator.calls


async def test_a_payment_to_someone_else_is_refused(
    gate: X402Gate, facilitator: LocalFacilitator, buyer: Buyer
) -> None:
    [terms] = required_of(await challenge(gate)).accepts
    elsewhere = Account.create().address
    signed_elsewhere = buyer.sign(terms, to=elsewhere)
    echoed_elsewhere = buyer.sign(
        terms.model_copy(update={"pay_to": elsewhere}),
        accepted=terms.model_copy(update={"pay_to": elsewhere}),
    )

    signed = await challenge(gate, req=request(payment=("payment-signature", signed_elsewhere)))
    echoed = await challenge(gate, req=request(payment=("payment-signature", echoed_elsewhere)))

    assert f"made out to {elsewhere}" in signed.body["error"]
    assert "payTo" in echoed.body["error"]
    assert "verify" not in facilitator.calls


async def test_an_expired_authorization_is_refused(
    gate: X402Gate, facilitator: LocalFacilitator, buyer: Buyer
) -> None:
    [terms] = required_of(await challenge(gate)).accepts
    header = buyer.sign(terms, valid_before=int(time.time()) - 5)

    error = await challenge(gate, req=request(payment=("payment-signature", header)))

    assert "expired" in error.body["error"]
    assert "verify" not in facilitator.calls


async def test_an_authorization_valid_for_far_too_long_is_refused(
    gate: X402Gate, buyer: Buyer
) -> None:
    [terms] = required_of(await challenge(gate)).accepts
    header = buyer.sign(terms, valid_before=int(time.time()) + 86_400)

    error = await challenge(gate, req=request(payment=("payment-signature", header)))

    assert "valid for too long" in error.body["error"]


async def test_a_signature_by_another_key_is_refused_by_the_facilitator(
    gate: X402Gate, facilitator: LocalFacilitator, token: FakeUsdc, buyer: Buyer
) -> None:
    [terms] = required_of(await challenge(gate)).accepts
    forged = buyer.sign(terms, signer=Account.create())

    error = await challenge(gate, req=request(payment=("payment-signature", forged)))

    assert "invalid_exact_evm_payload_signature" in error.body["error"]
    assert facilitator.calls.count("verify") == 1
    assert token.transfers == []


async def test_a_payer_without_the_funds_is_refused(
    gate: X402Gate, facilitator: LocalFacilitator, token: FakeUsdc
) -> None:
    broke = Buyer(token, usd_balance=5_000)  # half a cent
    header = await broke.pay(required_of(await challenge(gate)))

    error = await challenge(gate, req=request(payment=("payment-signature", header)))

    assert "invalid_exact_evm_insufficient_balance" in error.body["error"]
    assert token.transfers == []


async def test_a_payment_is_used_once(
    gate: X402Gate, facilitator: LocalFacilitator, token: FakeUsdc, buyer: Buyer
) -> None:
    header = await buyer.pay(required_of(await challenge(gate)))
    paid = request(payment=("payment-signature", header))
    admission = await admit(gate, paid)

    in_flight = await challenge(gate, req=paid)
    assert admission.settle_hook is not None
    await admission.settle_hook(Outcome.DELIVERED)
    replayed = await challenge(gate, req=paid)

    for error in (in_flight, replayed):
        assert "already been used" in error.body["error"]
    assert len(token.transfers) == 1
    assert facilitator.calls.count("verify") == 1


@pytest.mark.parametrize(
    "outcome",
    [Outcome.FAILED, Outcome.CANCELLED, Outcome.TIMEOUT, Outcome.CONTENT_VIOLATION],
)
async def test_nothing_is_settled_when_no_image_is_delivered(
    gate: X402Gate,
    facilitator: LocalFacilitator,
    token: FakeUsdc,
    buyer: Buyer,
    outcome: Outcome,
) -> None:
    header = await buyer.pay(required_of(await challenge(gate)))
    paid = request(payment=("payment-signature", header))
    admission = await admit(gate, paid)

    assert admission.settle_hook is not None
    await admission.settle_hook(outcome)

    assert facilitator.settlements == 0 and token.transfers == []
    said = decode_header(admission.headers["PAYMENT-RESPONSE"])
    assert said["success"] is False
    assert said["errorReason"] == f"not_delivered:{outcome.value}"
    # Nothing was taken, so the same signed payment may be sent again.
    again = await admit(gate, paid)
    assert again.settle_hook is not None
    await again.settle_hook(Outcome.DELIVERED)
    assert len(token.transfers) == 1


async def test_a_facilitator_down_at_verification_is_503_and_charges_nothing(
    gate: X402Gate, facilitator: LocalFacilitator, token: FakeUsdc, buyer: Buyer
) -> None:
    header = await buyer.pay(required_of(await challenge(gate)))
    facilitator.stop()

    with pytest.raises(PaymentServiceUnavailable) as caught:
        await admit(gate, request(payment=("payment-signature", header)))

    assert "Nothing was charged" in caught.value.message
    assert caught.value.headers["Retry-After"]
    assert token.transfers == []


async def test_a_facilitator_down_at_settlement_is_503_and_charges_nothing(
    gate: X402Gate, facilitator: LocalFacilitator, token: FakeUsdc, buyer: Buyer
) -> None:
    header = await buyer.pay(required_of(await challenge(gate)))
    admission = await admit(gate, request(payment=("payment-signature", header)))
    facilitator.stop()

    assert admission.settle_hook is not None
    with pytest.raises(PaymentServiceUnavailable) as caught:
        await admission.settle_hook(Outcome.DELIVERED)

    assert "cannot be reached. Nothing was charged" in caught.value.message
    assert token.transfers == []
    assert "PAYMENT-RESPONSE" not in admission.headers


async def test_a_facilitator_that_never_answered_is_503(tmp_path: Path) -> None:
    down = LocalFacilitator()  # bound, never started: connections are refused
    down.stop()
    built = build_payment_gate(gate_settings(tmp_path, down.url), public_url=ORIGIN)
    assert built is not None

    with pytest.raises(PaymentServiceUnavailable):
        await admit(built, request())
    await built.close()


async def test_a_settlement_the_chain_refuses_is_a_402_saying_so(
    gate: X402Gate, token: FakeUsdc, buyer: Buyer
) -> None:
    header = await buyer.pay(required_of(await challenge(gate)))
    admission = await admit(gate, request(payment=("payment-signature", header)))
    token.balances[buyer.address.lower()] = 0  # spent elsewhere meanwhile

    assert admission.settle_hook is not None
    with pytest.raises(PaymentRequiredError) as caught:
        await admission.settle_hook(Outcome.DELIVERED)

    assert "could not be settled" in caught.value.body["error"]
    said = decode_header(caught.value.headers["PAYMENT-RESPONSE"])
    assert said["success"] is False
    assert "PAYMENT-REQUIRED" in caught.value.headers
    assert token.transfers == []


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ("not base64 !", "not a base64-encoded x402 payment"),
        ("eyJ4NDAyVmVyc2lvbiI6IDJ9", "not a base64-encoded x402 payment"),  # {"x402Version": 2}
    ],
)
async def test_a_malformed_payment_header_is_a_402_that_says_so(
    gate: X402Gate, header: str, message: str
) -> None:
    error = await challenge(gate, req=request(payment=("payment-signature", header)))
    assert message in error.body["error"]


async def test_a_payment_on_another_network_is_refused(gate: X402Gate, buyer: Buyer) -> None:
    [terms] = required_of(await challenge(gate)).accepts
    mainnet = terms.model_copy(update={"network": "eip155:8453"})
    header = buyer.sign(terms, accepted=mainnet)

    error = await challenge(gate, req=request(payment=("payment-signature", header)))

    assert "eip155:8453" in error.body["error"] and "not accepted here" in error.body["error"]


async def test_a_free_request_needs_no_payment(gate: X402Gate) -> None:
    admission = await admit(gate, request(), charge("0"))
    assert admission.settle_hook is None
