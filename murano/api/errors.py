"""The one place where errors become HTTP: domain errors to Venice's status codes and
bodies (`StandardError {error}`, `DetailedError {error, details, issues}`), and pydantic's
validation errors to Zod-shaped `details` like Venice's."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from murano.errors import (
    AuthenticationFailed,
    ContentViolation,
    DeadlineExceeded,
    DependencyUnavailable,
    Forbidden,
    InferenceFailed,
    InsufficientBalance,
    InvalidRequest,
    JobCancelled,
    JobNotFound,
    ModelAtCapacity,
    ModelNotFound,
    ModelUnavailable,
    MuranoError,
    PayloadTooLarge,
    PaymentRequired,
    PaymentServiceUnavailable,
    RateLimited,
    ShuttingDown,
    UnsupportedMediaType,
    UpstreamRejected,
    UpstreamUnavailable,
)

__all__ = ["detailed_error", "install_error_handlers", "status_for", "validation_details"]

log = logging.getLogger("murano.api")

_STATUS: tuple[tuple[type[MuranoError], int], ...] = (
    (InvalidRequest, 400),
    (AuthenticationFailed, 401),
    (InsufficientBalance, 402),
    (PaymentRequired, 402),
    (Forbidden, 403),
    (ModelNotFound, 404),
    (PayloadTooLarge, 413),
    (UnsupportedMediaType, 415),
    (JobNotFound, 404),
    (ContentViolation, 422),
    (RateLimited, 429),
    (JobCancelled, 499),
    (InferenceFailed, 500),
    (ModelAtCapacity, 503),
    (ModelUnavailable, 503),
    (ShuttingDown, 503),
    (PaymentServiceUnavailable, 503),
    (DependencyUnavailable, 503),
    (UpstreamUnavailable, 503),
    (DeadlineExceeded, 504),
)


def status_for(error: MuranoError) -> int:
    if isinstance(error, UpstreamRejected):
        return error.status
    for cls, status in _STATUS:
        if isinstance(error, cls):
            return status
    return 500


def detailed_error(
    message: str, details: dict[str, Any], issues: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {"error": message, "details": details}
    if issues is not None:
        body["issues"] = issues
    return body


def error_body(error: MuranoError) -> dict[str, Any]:
    if isinstance(error, PaymentRequired | UpstreamRejected):
        return error.body
    if isinstance(error, PayloadTooLarge):
        return {"code": "PAYLOAD_TOO_LARGE", "error": error.message}
    if isinstance(error, InvalidRequest):
        details = {"_errors": [], error.field: {"_errors": [error.message]}}
        issue = {"code": "custom", "path": [error.field], "message": error.message}
        return detailed_error(error.message, details, [issue])
    return {"error": error.message}


# -- pydantic → Zod-shaped details -------------------------------------------------------


def _message(err: dict[str, Any]) -> str:
    kind, ctx = err["type"], err.get("ctx") or {}
    if kind == "missing":
        return "Required"
    if kind == "greater_than":
        return f"Number must be greater than {ctx.get('gt')}"
    if kind == "greater_than_equal":
        return f"Number must be greater than or equal to {ctx.get('ge')}"
    if kind == "less_than_equal":
        return f"Number must be less than or equal to {ctx.get('le')}"
    if kind == "string_too_short":
        return f"String must contain at least {ctx.get('min_length')} character(s)"
    if kind == "string_too_long":
        return f"String must contain at most {ctx.get('max_length')} character(s)"
    if kind == "literal_error":
        return f"Invalid enum value. Expected {ctx.get('expected')}, received {err['input']!r}"
    if kind in {"int_type", "int_from_float", "int_parsing"}:
        return f"Expected integer, received {_json_type(err['input'])}"
    if kind in {"float_type", "float_parsing"}:
        return f"Expected number, received {_json_type(err['input'])}"
    if kind in {"bool_type", "bool_parsing"}:
        return f"Expected boolean, received {_json_type(err['input'])}"
    if kind in {"string_type"}:
        return f"Expected string, received {_json_type(err['input'])}"
    return str(err.get("msg", "Invalid input"))


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def validation_details(
    errors: Sequence[Any],
) -> tuple[str, dict[str, Any], list[dict[str, Any]]]:
    """(summary message, Zod `format()` tree, flat issue list) for pydantic errors."""
    tree: dict[str, Any] = {"_errors": []}
    issues: list[dict[str, Any]] = []
    unknown: list[str] = []
    summaries: list[str] = []
    for err in errors:
        loc = [str(part) for part in err.get("loc", ()) if part != "body"]
        # Union members add their type name to the location; drop those.
        loc = [part for part in loc if not part.startswith(("function-", "constrained-"))]
        loc = [p for p in loc if p not in {"int", "float", "str", "bool", "none"}]
        if err["type"] == "extra_forbidden" and loc:
            unknown.append(loc[-1])
            continue
        if err["type"] == "json_invalid":
            message = "Malformed JSON in the request body"
            tree["_errors"].append(message)
            issues.append({"code": "invalid_json", "path": [], "message": message})
            summaries.append(message)
            continue
        message = _message(err)
        node = tree
        for part in loc:
            node = node.setdefault(part, {"_errors": []})
        if message not in node["_errors"]:
            node["_errors"].append(message)
        issues.append({"code": err["type"], "path": loc, "message": message})
        summaries.append(f"{'.'.join(loc) or 'body'}: {message}")
    if unknown:
        names = ", ".join(f"'{name}'" for name in dict.fromkeys(unknown))
        message = f"Unrecognized key(s) in object: {names}"
        tree["_errors"].append(message)
        issues.append(
            {"code": "unrecognized_keys", "keys": unknown, "path": [], "message": message}
        )
        summaries.insert(0, message)
    return "; ".join(dict.fromkeys(summaries)) or "Invalid request parameters", tree, issues


# -- handlers -----------------------------------------------------------------------------


async def _note_failure(request: Request, status: int) -> None:
    """Count a 4xx (not 429) of an authenticated caller against its failure budget."""
    principal = getattr(request.state, "principal", None)
    if principal is None or not 400 <= status < 500 or status == 429:
        return
    model = getattr(request.state, "log_fields", {}).get("model", "")
    try:
        await request.app.state.accounts.note_failure(principal, model, status)
    except Exception:
        log.exception("could not record a failed request")


async def _on_domain_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, MuranoError)
    status = status_for(exc)
    await _note_failure(request, status)
    # Outages are logged once each by whoever watches the dependency, not per request.
    if status >= 500 and not isinstance(
        exc,
        ModelAtCapacity
        | ModelUnavailable
        | PaymentServiceUnavailable
        | DependencyUnavailable
        | UpstreamUnavailable
        | ShuttingDown,
    ):
        log.warning("request failed with %d: %s", status, type(exc).__name__)
    return JSONResponse(error_body(exc), status_code=status, headers=exc.headers)


async def _on_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    await _note_failure(request, 400)
    message, details, issues = validation_details(exc.errors())
    return JSONResponse(detailed_error(message, details, issues), status_code=400)


def unreadable_body(cause: BaseException | None) -> str:
    """What is wrong with a body FastAPI could not parse, from what its parser raised."""
    if isinstance(cause, UnicodeDecodeError):
        return "The request body is not valid UTF-8"
    if isinstance(cause, RecursionError):
        return "The request body's JSON is nested too deeply"
    if isinstance(cause, ValueError) and "digits" in str(cause):
        return "The request body holds a number with too many digits"
    return "The request body could not be parsed as JSON"


async def _on_http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 400:
        # Every 400 is a DetailedError; FastAPI raises this one for bodies it cannot decode.
        await _note_failure(request, 400)
        message = (
            unreadable_body(exc.__cause__)
            if exc.detail == "There was an error parsing the body" or not exc.detail
            else str(exc.detail)
        )
        issue = {"code": "invalid_body", "path": [], "message": message}
        body = detailed_error(message, {"_errors": [message]}, [issue])
        return JSONResponse(body, status_code=400, headers=exc.headers)
    messages = {404: "Not found", 405: "Method not allowed"}
    message = exc.detail if isinstance(exc.detail, str) else messages.get(exc.status_code, "")
    return JSONResponse(
        {"error": message or "An unknown error occurred"},
        status_code=exc.status_code,
        headers=exc.headers,
    )


async def _on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return JSONResponse({"error": "An unknown error occurred"}, status_code=500)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(MuranoError, _on_domain_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(HTTPException, _on_http_error)
    app.add_exception_handler(Exception, _on_unexpected)
