"""murano's domain errors. They know nothing of HTTP: `murano.api.errors` maps each to
Venice's status code and JSON body, and nothing else does.

    MuranoError
    ├── InvalidRequest            a value the model or the API cannot take (field, message)
    │   └── UnsupportedFeature    a field this model cannot honour (field, model)
    ├── PayloadTooLarge           an input (image) over its size limit (field)
    ├── UnsupportedMediaType      an input that declares a type we cannot take (field)
    ├── ModelNotFound             no model with that id
    ├── JobNotFound               no async job with that id for this caller
    ├── AuthenticationFailed      missing, unknown, revoked or expired credentials
    ├── Forbidden                 valid credentials without the right (admin API)
    ├── InsufficientBalance       the key's balance does not cover the request
    ├── PaymentRequired           x402: pay first (carries the challenge)
    ├── PaymentServiceUnavailable x402: the facilitator cannot be reached
    ├── DependencyUnavailable     the accounts database or Redis cannot be reached
    ├── RateLimited               too many requests (or too many failures) for this key
    ├── ContentViolation          an edit's prompt is refused by the prompt policy
    ├── ModelAtCapacity           the model's queue is full
    ├── ModelUnavailable          the model is offline or failed to load
    ├── DeadlineExceeded          the job waited past its deadline before reaching the device
    ├── JobCancelled              the client went away (or the job was cancelled) before delivery
    ├── ShuttingDown              the server is draining: no new jobs; unfinished ones cancelled
    ├── InferenceFailed           the pipeline raised while generating
    ├── UpstreamRejected          an upstream API refused the request (its 4xx status, body)
    └── UpstreamUnavailable       an upstream API is down, slow, out of credit or limiting us
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = [
    "AuthenticationFailed",
    "ContentViolation",
    "DeadlineExceeded",
    "DependencyUnavailable",
    "Forbidden",
    "InferenceFailed",
    "InsufficientBalance",
    "InvalidRequest",
    "JobCancelled",
    "JobNotFound",
    "ModelAtCapacity",
    "ModelNotFound",
    "ModelUnavailable",
    "MuranoError",
    "PayloadTooLarge",
    "PaymentRequired",
    "PaymentServiceUnavailable",
    "RateLimited",
    "ShuttingDown",
    "UnsupportedFeature",
    "UnsupportedMediaType",
    "UpstreamRejected",
    "UpstreamUnavailable",
]


class MuranoError(Exception):
    """Base of every error murano raises on purpose. `headers` travel to the response."""

    def __init__(self, message: str, *, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers: dict[str, str] = dict(headers or {})


class InvalidRequest(MuranoError):
    """A request value that is well-formed but not allowed; `field` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class UnsupportedFeature(InvalidRequest):
    """A documented field that this model cannot honour."""

    def __init__(self, field: str, model: str, message: str | None = None) -> None:
        super().__init__(field, message or f"Model '{model}' does not support '{field}'.")
        self.model = model


class PayloadTooLarge(MuranoError):
    """An input over its size limit (an input image of 25 MB or more); `field` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class UnsupportedMediaType(MuranoError):
    """An input that declares a media type murano cannot take; `field` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class ModelNotFound(MuranoError):
    def __init__(self, model: str) -> None:
        super().__init__("Specified model not found")
        self.model = model


class JobNotFound(MuranoError):
    def __init__(self, job_id: str) -> None:
        super().__init__("Specified job not found")
        self.job_id = job_id


class AuthenticationFailed(MuranoError):
    def __init__(self, message: str = "Authentication failed") -> None:
        super().__init__(message)


class Forbidden(MuranoError):
    def __init__(self, message: str = "Unauthorized access") -> None:
        super().__init__(message)


class InsufficientBalance(MuranoError):
    def __init__(self, *, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(
            "Insufficient USD or Diem balance to complete request. "
            "Ask this server's operator to top up your API key.",
            headers=headers,
        )


class PaymentRequired(MuranoError):
    """x402: the body and headers of the 402 are prepared by the payments layer."""

    def __init__(
        self, body: Mapping[str, Any], *, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(str(body.get("error", "Payment required")), headers=headers)
        self.body: dict[str, Any] = dict(body)


class PaymentServiceUnavailable(MuranoError):
    """x402: the payment facilitator cannot be reached (or answered nonsense)."""

    def __init__(self, message: str = "", *, retry_after_s: int = 10) -> None:
        super().__init__(
            message or "The payment service is temporarily unavailable. Please try again later.",
            headers={"Retry-After": str(retry_after_s)},
        )


class DependencyUnavailable(MuranoError):
    """A service murano keeps its accounts in (`dependency`: "database" or "redis") cannot
    be reached. Nothing was charged; the client may retry after `retry_after_s`."""

    def __init__(self, dependency: str, *, retry_after_s: int = 5) -> None:
        super().__init__(
            "The service is temporarily unavailable. Please try again later.",
            headers={"Retry-After": str(retry_after_s)},
        )
        self.dependency = dependency


class RateLimited(MuranoError):
    def __init__(
        self, message: str = "Rate limit exceeded", *, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message, headers=headers)


class ModelAtCapacity(MuranoError):
    def __init__(self, model: str, retry_after_s: int = 5) -> None:
        super().__init__(
            "The model is at capacity. Please try again later.",
            headers={"Retry-After": str(retry_after_s)},
        )
        self.model = model


class ModelUnavailable(MuranoError):
    def __init__(self, model: str, reason: str = "") -> None:
        super().__init__("The model is temporarily offline. Please try again later.")
        self.model = model
        self.reason = reason


class DeadlineExceeded(MuranoError):
    def __init__(self, waited_ms: float) -> None:
        super().__init__("The request timed out before the model could start it.")
        self.waited_ms = waited_ms


class JobCancelled(MuranoError):
    def __init__(self) -> None:
        super().__init__("The request was cancelled.")


class ContentViolation(MuranoError):
    """An edit's prompt is refused by the prompt policy: Venice answers the edit endpoints
    with a 422 `ContentViolationError` (generation answers a 200 with the violation header)."""

    def __init__(self) -> None:
        super().__init__(
            "Your prompt violates the content policy of Venice.ai or the model provider"
        )


class ShuttingDown(MuranoError):
    """The server is shutting down: it takes no new jobs, and cancels those it could not
    finish in time."""

    def __init__(self, retry_after_s: int = 30) -> None:
        super().__init__(
            "The server is shutting down. Please try again shortly.",
            headers={"Retry-After": str(retry_after_s)},
        )


class InferenceFailed(MuranoError):
    def __init__(self, cause: str = "") -> None:
        super().__init__("Inference processing failed")
        self.cause = cause


class UpstreamRejected(MuranoError):
    """An upstream API refused the caller's request: its status (a 4xx) and its error body
    reach the caller as they came."""

    def __init__(self, status: int, message: str, body: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.body: dict[str, Any] = dict(body) if body is not None else {"error": message}


class UpstreamUnavailable(MuranoError):
    """An upstream API cannot serve now (down, timed out, 5xx, out of credit, limiting the
    operator's key): the caller may retry later."""

    def __init__(self, upstream: str, reason: str, *, retry_after_s: int = 5) -> None:
        super().__init__(
            "The model is temporarily unavailable. Please try again later.",
            headers={"Retry-After": str(retry_after_s)},
        )
        self.upstream = upstream
        self.reason = reason
