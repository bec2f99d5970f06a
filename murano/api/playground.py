"""The playground: one page at `/` (static files shipped in the package, no build step, nothing
fetched from outside the server) that calls the API from the browser, and the little it needs
to know that the API does not say (`GET /playground/config.json`: whether a key is needed).

Everything here is served with a strict Content-Security-Policy: scripts and styles only
from this server, images only from it or from `data:`/`blob:` URLs, requests only to it."""

from __future__ import annotations

from importlib import resources
from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.responses import JSONResponse

from murano import __version__
from murano.accounts.base import Accounts

__all__ = ["CONTENT_SECURITY_POLICY", "router"]

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data: blob:",
        "connect-src 'self'",
        "form-action 'none'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    )
)

_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # The files change with murano's version; the browser revalidates rather than guess.
    "Cache-Control": "no-cache",
}

_FILES = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}

router = APIRouter(include_in_schema=False)


def _static(name: str) -> Response:
    text = resources.files("murano.playground").joinpath("static", name).read_bytes()
    return Response(text, media_type=_FILES[name], headers=_HEADERS)


@router.api_route("/", methods=["GET", "HEAD"])
async def index() -> Response:
    return _static("index.html")


@router.get("/playground/config.json")
async def config(request: Request) -> JSONResponse:
    accounts: Accounts = request.app.state.accounts
    body: dict[str, Any] = {"authRequired": accounts.auth_required, "version": __version__}
    return JSONResponse(body, headers=_HEADERS)


@router.get("/playground/{name}")
async def static_file(name: str) -> Response:
    if name not in _FILES:
        raise HTTPException(404)
    return _static(name)
