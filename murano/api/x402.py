"""`POST /api/v1/x402/top-up`: buy wallet credits with an x402 payment (Venice's flow).

Without a payment header the answer is a 402 whose body (and `PAYMENT-REQUIRED` header) is
x402's v2 `PaymentRequired` for `amountUsd` (default: the minimum top-up). With
`PAYMENT-SIGNATURE` (or `X-PAYMENT`, `X-402-Payment`) the payment is verified, settled and
credited to the paying wallet, which then signs in to the inference endpoints with
`SIGN-IN-WITH-X`. Errors are Venice's `{error: CODE, message, details?}`.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from murano.payments import PaymentServiceUnavailable, TopUpRejected, X402Gate, X402Request
from murano.payments.bodies import payment_required_headers, top_up_error, top_up_success
from murano.payments.topup import TopUps

__all__ = ["router"]

router = APIRouter(prefix="/api/v1")

TOP_UP_DESCRIPTION = "Top up x402 wallet credits"


def _gate(request: Request) -> tuple[X402Gate, TopUps] | None:
    """The image service's x402 gate and its top-ups, when wallet credits are on."""
    gate = getattr(getattr(request.app.state, "service", None), "payment_gate", None)
    if not isinstance(gate, X402Gate) or gate.top_ups is None:
        return None
    return gate, gate.top_ups


@router.post("/x402/top-up", response_model=None)
async def top_up(
    request: Request,
    amount_usd: Annotated[Decimal | None, Query(alias="amountUsd", gt=0)] = None,
) -> JSONResponse:
    found = _gate(request)
    if found is None:
        return JSONResponse(
            top_up_error("X402_DISABLED", "x402 wallet credits are not enabled on this server."),
            status_code=404,
        )
    gate, top_ups = found
    x402 = X402Request.from_scope(request.scope)
    resource = gate.resource(x402, TOP_UP_DESCRIPTION)
    try:
        if x402.payment is None:
            required = await top_ups.payment_required(top_ups.quote(amount_usd), resource)
            body = required.model_dump(by_alias=True, exclude_none=True)
            return JSONResponse(body, status_code=402, headers=payment_required_headers(required))
        done = await top_ups.top_up(x402.payment[1], resource)
    except TopUpRejected as exc:
        details = {"reason": exc.reason} if exc.reason else None
        return JSONResponse(top_up_error(exc.code, exc.message, details), status_code=exc.status)
    except PaymentServiceUnavailable as exc:
        return JSONResponse(
            top_up_error("FACILITATOR_UNAVAILABLE", exc.message),
            status_code=503,
            headers=exc.headers,
        )
    body = top_up_success(done.address, done.credited_usd, done.balance_usd, done.payment_id)
    return JSONResponse(body, headers=done.headers)
