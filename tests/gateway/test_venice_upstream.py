"""A murano as the Venice upstream of another, in one process: billing on both sides, the
operator's key upstream (never the caller's), errors mapped, retries, both endpoints."""

from __future__ import annotations

import base64
import io
import logging
import threading
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from murano.accounts.base import Admission, Charge, Outcome, Principal
from murano.imaging.watermark import has_watermark
from tests.conftest import API_KEY
from tests.gateway.conftest import UPSTREAM_URL, Pair, flag_all, images_of, make_pair

URL = "/api/v1/image/generate"
OPENAI_URL = "/api/v1/images/generations"


def body(**fields: Any) -> dict[str, Any]:
    return {"model": "proxied", "prompt": "a lighthouse", "width": 64, "height": 48, **fields}


async def test_a_generation_is_billed_by_both_at_their_own_prices(pair: Pair) -> None:
    response = await pair.gateway.post(
        URL, json=body(variants=2, format="png"), headers=pair.caller
    )
    assert response.status_code == 200, response.text
    images = images_of(response)
    assert [(i.format, i.size) for i in images] == [("PNG", (64, 48))] * 2
    assert response.headers["x-venice-model-id"] == "proxied"
    assert response.json()["request"]["data"]["model"] == "proxied"
    # murano charges its own price (0.05 an image); the upstream charges the operator its own.
    assert await pair.caller_balance() == Decimal("0.90")
    assert await pair.operator_balance() == Decimal("0.98")
    assert Decimal(response.headers["x-venice-balance-usd"]) == 1


async def test_the_operators_key_goes_upstream_never_the_callers(pair: Pair) -> None:
    caller_secret = pair.caller["Authorization"].split()[1]
    response = await pair.gateway.post(URL, json=body(), headers=pair.caller)
    assert response.status_code == 200
    [sent] = pair.transport.requests
    assert sent.url == f"{UPSTREAM_URL}/image/generate"
    assert sent.headers["authorization"] == f"Bearer {pair.operator_key}"
    raw = bytes(sent.content) + str(sent.headers).encode()
    assert caller_secret.encode() not in raw
    assert API_KEY.encode() not in raw


async def test_the_upstreams_400_comes_back_as_the_same_400(pair: Pair) -> None:
    # 60 is fine for the gateway's entry (divisor 1), not for the upstream's model (8).
    direct = await pair.upstream.post(
        URL,
        json=body(model="test-model", width=60, steps=4, seed=3, format="webp"),
        headers={"Authorization": f"Bearer {pair.operator_key}"},
    )
    proxied = await pair.gateway.post(URL, json=body(width=60, seed=3), headers=pair.caller)
    assert direct.status_code == proxied.status_code == 400
    assert proxied.json() == direct.json()
    assert "divisible by 8" in proxied.json()["error"]
    assert await pair.caller_balance() == Decimal("1")
    assert await pair.operator_balance() == Decimal("1")


async def test_a_stopped_upstream_is_a_503_that_releases_the_reservation(
    pair: Pair, caplog: pytest.LogCaptureFixture
) -> None:
    pair.transport.stopped.add("upstream.test")
    response = await pair.gateway.post(URL, json=body(), headers=pair.caller)
    assert response.status_code == 503
    assert response.json() == {
        "error": "The model is temporarily unavailable. Please try again later."
    }
    assert int(response.headers["retry-after"]) > 0
    assert len(pair.transport.requests) == 2  # refused connections are retried once
    assert await pair.caller_balance() == Decimal("1")
    metrics = (await pair.gateway.get("/metrics")).text
    assert f'murano_upstream_calls_total{{upstream="{UPSTREAM_URL}"}} 2.0' in metrics
    assert (
        f'murano_upstream_errors_total{{reason="connect",upstream="{UPSTREAM_URL}"}} 2.0' in metrics
    )
    assert f'murano_upstream_seconds_count{{upstream="{UPSTREAM_URL}"}} 2.0' in metrics


async def test_an_upstream_5xx_is_retried_once(pair: Pair) -> None:
    failures = iter([True])
    pair.upstream_parts.backends["test-model"].fail_when = lambda _batch: next(failures, False)
    response = await pair.gateway.post(URL, json=body(), headers=pair.caller)
    assert response.status_code == 200, response.text
    assert len(pair.transport.requests) == 2
    assert await pair.caller_balance() == Decimal("0.95")
    assert await pair.operator_balance() == Decimal("0.99")


async def test_an_upstream_failing_twice_is_a_503_and_nothing_is_charged(pair: Pair) -> None:
    pair.upstream_parts.backends["test-model"].fail_when = lambda _batch: True
    response = await pair.gateway.post(URL, json=body(), headers=pair.caller)
    assert response.status_code == 503
    assert "retry-after" in response.headers
    assert len(pair.transport.requests) == 2
    assert await pair.caller_balance() == Decimal("1")
    assert await pair.operator_balance() == Decimal("1")


async def test_an_upstream_timeout_is_a_503_and_not_retried(pair: Pair) -> None:
    backend = pair.upstream_parts.backends["test-model"]
    backend.gate = threading.Event()  # the upstream never answers in time
    try:
        response = await pair.gateway.post(
            URL, json=body(model="proxied-slow"), headers=pair.caller
        )
    finally:
        backend.gate.set()
    assert response.status_code == 503
    assert "retry-after" in response.headers
    assert len(pair.transport.requests) == 1
    assert await pair.caller_balance() == Decimal("1")


async def test_the_upstreams_429_is_a_503_for_the_caller(tmp_path: Path) -> None:
    async for pair in make_pair(tmp_path, upstream_rpm=1):
        first = await pair.gateway.post(URL, json=body(), headers=pair.caller)
        limited = await pair.gateway.post(URL, json=body(), headers=pair.caller)
        assert first.status_code == 200
        assert limited.status_code == 503
        assert 1 <= int(limited.headers["retry-after"]) <= 60
        assert await pair.caller_balance() == Decimal("0.95")


async def test_an_operator_out_of_credit_is_a_503_logged_loudly(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async for pair in make_pair(tmp_path, operator_balance="0.001"):
        with caplog.at_level(logging.ERROR, "murano.gateway"):
            response = await pair.gateway.post(URL, json=body(), headers=pair.caller)
        assert response.status_code == 503
        assert len(pair.transport.requests) == 1
        assert await pair.caller_balance() == Decimal("1")
        assert any("wants payment" in r.getMessage() for r in caplog.records)
        assert pair.operator_key not in caplog.text


async def test_a_wrong_operator_key_is_a_503_logged_loudly(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    environ = {"UPSTREAM_KEY": "mur_not-a-key-of-the-upstream"}
    async for pair in make_pair(tmp_path, environ=environ):
        with caplog.at_level(logging.ERROR, "murano.gateway"):
            response = await pair.gateway.post(URL, json=body(), headers=pair.caller)
        assert response.status_code == 503
        assert response.headers["retry-after"] == "60"
        assert await pair.caller_balance() == Decimal("1")
        assert any("rejected the operator's key" in r.getMessage() for r in caplog.records)


async def test_an_upstream_content_violation_is_passed_on_and_not_charged(pair: Pair) -> None:
    response = await pair.gateway.post(
        URL, json=body(prompt="forbidden fruit", format="png"), headers=pair.caller
    )
    assert response.status_code == 200
    assert response.headers["x-venice-is-content-violation"] == "true"
    assert await pair.caller_balance() == Decimal("1")
    assert await pair.operator_balance() == Decimal("1")


async def test_a_missing_operator_key_is_a_503(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async for pair in make_pair(tmp_path, environ={}):
        response = await pair.gateway.post(URL, json=body(), headers=pair.caller)
        assert response.status_code == 503
        assert pair.transport.requests == []
        assert await pair.caller_balance() == Decimal("1")
        assert "UPSTREAM_KEY is not set" in caplog.text


async def test_an_x402_payment_admits_and_settles_like_a_key(tmp_path: Path) -> None:
    """A payment gate twin: admits anonymous callers, records the charge and its outcome."""
    charges: list[Charge] = []
    outcomes: list[Outcome] = []

    async def gate(principal: Principal, charge: Charge) -> Admission:
        charges.append(charge)

        async def settle(outcome: Outcome) -> None:
            outcomes.append(outcome)

        return Admission(principal, charge, settle_hook=settle)

    async for pair in make_pair(tmp_path, payment_gate=gate):
        paid = await pair.gateway.post(URL, json=body(variants=2))
        assert paid.status_code == 200
        pair.transport.stopped.add("upstream.test")
        failed = await pair.gateway.post(URL, json=body())
        assert failed.status_code == 503
        assert [(c.model_id, c.images, c.unit_price_usd) for c in charges] == [
            ("proxied", 2, Decimal("0.05")),
            ("proxied", 1, Decimal("0.05")),
        ]
        assert outcomes == [Outcome.DELIVERED, Outcome.FAILED]
        assert await pair.operator_balance() == Decimal("0.98")


async def test_return_binary_through_the_gateway(pair: Pair) -> None:
    response = await pair.gateway.post(
        URL, json=body(return_binary=True, format="jpeg"), headers=pair.caller
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(response.content)).size == (64, 48)
    assert await pair.caller_balance() == Decimal("0.95")


async def test_the_openai_endpoint_through_a_venice_upstream(pair: Pair) -> None:
    response = await pair.gateway.post(
        OPENAI_URL,
        json={"model": "proxied", "prompt": "a lighthouse", "size": "256x256"},
        headers=pair.caller,
    )
    assert response.status_code == 200, response.text
    data = base64.b64decode(response.json()["data"][0]["b64_json"])
    image = Image.open(io.BytesIO(data))
    assert (image.format, image.size) == ("PNG", (256, 256))
    sent = pair.transport.requests[0]
    assert b'"width":256' in sent.content and b'"variants":1' in sent.content
    assert await pair.caller_balance() == Decimal("0.95")


async def test_a_ratio_model_forwards_aspect_ratio_and_resolution(pair: Pair) -> None:
    response = await pair.gateway.post(
        URL,
        json={"model": "proxied-ratio", "prompt": "p", "aspect_ratio": "16:9", "resolution": "1K"},
        headers=pair.caller,
    )
    assert response.status_code == 200, response.text
    [image] = images_of(response)
    assert image.size == (1360, 768)  # the upstream's own sizing of 16:9 at 1K
    sent = pair.transport.requests[0].content
    assert b'"aspect_ratio":"16:9"' in sent and b'"resolution":"1K"' in sent
    assert b'"width"' not in sent
    assert await pair.caller_balance() == Decimal("0.9")  # the 1K tier's price


async def test_openai_size_on_a_ratio_model_becomes_its_aspect_ratio(pair: Pair) -> None:
    response = await pair.gateway.post(
        OPENAI_URL,
        json={"model": "proxied-ratio", "prompt": "p", "size": "1024x1024"},
        headers=pair.caller,
    )
    assert response.status_code == 200, response.text
    assert b'"aspect_ratio":"1:1"' in pair.transport.requests[0].content
    refused = await pair.gateway.post(
        OPENAI_URL,
        json={"model": "proxied-ratio", "prompt": "p", "size": "1536x1024"},
        headers=pair.caller,
    )
    assert refused.status_code == 400
    assert len(pair.transport.requests) == 1


async def test_murano_checks_the_request_before_anything_goes_upstream(pair: Pair) -> None:
    response = await pair.gateway.post(URL, json=body(prompt="x" * 501), headers=pair.caller)
    assert response.status_code == 400
    assert pair.transport.requests == []
    unauthorized = await pair.gateway.post(URL, json=body(), headers={})
    assert unauthorized.status_code == 401
    assert pair.transport.requests == []


async def test_local_post_processing_is_a_per_entry_setting(tmp_path: Path) -> None:
    async for pair in make_pair(tmp_path, inspector=flag_all):
        big = {"width": 256, "height": 256, "format": "png", "safe_mode": False}
        plain = await pair.gateway.post(URL, json=body(**big), headers=pair.caller)
        marked = await pair.gateway.post(
            URL, json=body(model="proxied-marked", **big), headers=pair.caller
        )
        assert not has_watermark(base64.b64decode(plain.json()["images"][0]))
        assert has_watermark(base64.b64decode(marked.json()["images"][0]))
        blurred = await pair.gateway.post(
            URL, json=body(model="proxied-marked", format="png"), headers=pair.caller
        )
        assert blurred.headers["x-venice-is-blurred"] == "true"
        unflagged = await pair.gateway.post(URL, json=body(format="png"), headers=pair.caller)
        assert unflagged.headers["x-venice-is-blurred"] == "false"


async def test_the_format_asked_for_is_the_format_delivered(pair: Pair) -> None:
    response = await pair.gateway.post(URL, json=body(format="webp"), headers=pair.caller)
    assert [i.format for i in images_of(response)] == ["WEBP"]
