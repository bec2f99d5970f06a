"""x402 on the edit endpoints, exactly as on generation: an unpaid edit is validated first
(a bad image never asks for money), then answered 402 for the model's price; the x402 SDK
pays and gets the edited image."""

from __future__ import annotations

import base64

from tests.edit.images import encoded
from tests.payments.conftest import ORIGIN, Buyer
from tests.payments.facilitator import LocalFacilitator
from tests.payments.test_http import Paid

EDIT = "/api/v1/image/edit"
BODY = {"prompt": "make it blue", "image": base64.b64encode(encoded(256, 256)).decode()}


async def test_an_unpaid_edit_is_asked_to_pay_after_validation(
    paid: Paid,
    facilitator: LocalFacilitator,
) -> None:
    async with paid.client() as http:
        bad = await http.post(EDIT, json={**BODY, "image": "bm90IGFuIGltYWdl"})
        assert bad.status_code == 400 and "payment-required" not in bad.headers
        assert facilitator.calls == []
        unpaid = await http.post(EDIT, json=BODY)
    assert unpaid.status_code == 402
    body = unpaid.json()
    assert body["resource"]["url"] == ORIGIN + EDIT
    assert body["accepts"][0]["amount"] == "10000"  # $0.01 in USDC units


async def test_the_sdk_pays_for_an_edit(paid: Paid, buyer: Buyer) -> None:
    async with paid.client(buyer) as http:
        response = await http.post(EDIT, json=BODY)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    assert "payment-response" in response.headers
    assert paid.parts.backends["test-model"].batches[-1][0].task == "img2img"
