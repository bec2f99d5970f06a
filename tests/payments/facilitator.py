"""A local x402 facilitator: the x402 package's `x402Facilitator` with its exact-EVM schemes
(v2 on `eip155:84532`, v1 on `base-sepolia`) settling on a `FakeUsdc`, served over HTTP
(`GET /supported`, `POST /verify`, `POST /settle`, the x402 facilitator API) by uvicorn in
a thread, on a free port of 127.0.0.1.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from x402 import x402Facilitator
from x402.mechanisms.evm.exact import ExactEvmFacilitatorScheme
from x402.mechanisms.evm.exact.v1 import ExactEvmSchemeV1Facilitator
from x402.schemas import parse_payment_payload
from x402.schemas.helpers import parse_payment_requirements

from tests.payments.chain import ChainSigner, FakeUsdc

__all__ = ["LocalFacilitator"]

NETWORK = "eip155:84532"
LEGACY_NETWORK = "base-sepolia"


def _facilitator(signer: ChainSigner) -> x402Facilitator:
    facilitator = x402Facilitator()
    facilitator.register([NETWORK], ExactEvmFacilitatorScheme(signer))
    facilitator.register_v1([LEGACY_NETWORK], ExactEvmSchemeV1Facilitator(signer))
    return facilitator


def _app(facilitator: x402Facilitator, calls: list[str]) -> Starlette:
    async def supported(request: Request) -> JSONResponse:
        calls.append("supported")
        return JSONResponse(
            facilitator.get_supported().model_dump(by_alias=True, exclude_none=True)
        )

    async def verify(request: Request) -> JSONResponse:
        calls.append("verify")
        payload, requirements = _parse(await request.json())
        result = await facilitator.verify(payload, requirements)
        return JSONResponse(result.model_dump(by_alias=True, exclude_none=True))

    async def settle(request: Request) -> JSONResponse:
        calls.append("settle")
        payload, requirements = _parse(await request.json())
        result = await facilitator.settle(payload, requirements)
        return JSONResponse(result.model_dump(by_alias=True, exclude_none=True))

    return Starlette(
        routes=[
            Route("/supported", supported, methods=["GET"]),
            Route("/verify", verify, methods=["POST"]),
            Route("/settle", settle, methods=["POST"]),
        ]
    )


def _parse(body: dict[str, Any]) -> tuple[Any, Any]:
    payload = parse_payment_payload(body["paymentPayload"])
    return payload, parse_payment_requirements(payload.x402_version, body["paymentRequirements"])


class LocalFacilitator:
    """Start with `start()`, stop with `stop()`; `url` is its base URL. `calls` lists the
    endpoints hit, in order; `token` is the chain it settles on."""

    def __init__(self, token: FakeUsdc | None = None) -> None:
        self.token = token or FakeUsdc()
        self.signer = ChainSigner(self.token)
        self.calls: list[str] = []
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self.port: int = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            _app(_facilitator(self.signer), self.calls),
            log_level="warning",
            lifespan="off",
            ws="none",
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True
        )

    def start(self) -> LocalFacilitator:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the local facilitator did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        """Stop serving; connections to `url` are refused afterwards."""
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        self._sock.close()

    @property
    def settlements(self) -> int:
        return self.calls.count("settle")
