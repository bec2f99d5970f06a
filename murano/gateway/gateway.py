"""`Gateway`: models served by an upstream API, called with the operator's key after murano
has admitted the caller.

What an upstream answer becomes:

    2xx with images             the images, post-processed as the entry says
    connection refused, 5xx     retried once (nothing was made, so nothing was charged
                                upstream), then UpstreamUnavailable (503, Retry-After)
    timeout                     UpstreamUnavailable; not retried (it may still be working)
    429                         UpstreamUnavailable: the operator's key is limited, not the
                                caller, whose own limits murano applies
    401, 403, 402               UpstreamUnavailable, logged as an error: the operator's key
                                is wrong or out of credit, which no caller can fix
    other 4xx                   UpstreamRejected with the upstream's status and error body
    2xx without images          UpstreamUnavailable (logged)

Every call counts in `/metrics` (`murano_upstream_calls`, `_errors`, `_seconds`) per upstream.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx
from PIL import Image as PILImage
from PIL.Image import Image

from murano.catalog.entries import ModelEntry, UpstreamEntry
from murano.engine.job import Inspector
from murano.errors import UpstreamRejected, UpstreamUnavailable
from murano.gateway.clients import UpstreamClient, UpstreamImages, client_for
from murano.gateway.translate import UpstreamRequest
from murano.imaging.encode import ImageFormat, sniff_format
from murano.metrics import Metrics
from murano.postprocess import OutputOptions, Rendered, render
from murano.safety.policy import NOT_ASKED, SafetyDecision

__all__ = ["Delivery", "Gateway"]

log = logging.getLogger("murano.gateway")

_RETRY_AFTER_S = 5
_OPERATOR_STATUSES = {401: "rejected the operator's key", 402: "wants payment", 403: "refused"}


@dataclass(frozen=True, slots=True)
class Delivery:
    rendered: Rendered
    content_violation: bool
    # Monotonic time when the upstream answered (before murano's post-processing).
    generated_at: float


class Gateway:
    """Pooled clients per upstream (by base URL), retries, error mapping, metrics, and
    murano's post-processing of the upstream's images."""

    def __init__(
        self,
        *,
        metrics: Metrics,
        transport: httpx.AsyncBaseTransport | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.metrics = metrics
        self._transport = transport
        self._environ = os.environ if environ is None else environ
        self._pools: dict[str, httpx.AsyncClient] = {}

    async def generate(
        self,
        entry: ModelEntry,
        request: UpstreamRequest,
        options: OutputOptions,
        safety: SafetyDecision = NOT_ASKED,
    ) -> Delivery:
        """The upstream's images, with murano's post-processing where the entry turns it
        on; `safety.classifier` (the job's safety decision) runs on them when given."""
        upstream = _upstream(entry)
        client = client_for(upstream, self._pool(upstream))
        got = await self._call(client, entry, request, self._key(upstream))
        generated_at = time.monotonic()
        local = _local_options(upstream, options)
        try:
            rendered = await asyncio.to_thread(_finish, got, request.fmt, local, safety.classifier)
        except (OSError, ValueError) as exc:  # PIL cannot read what it sent
            self._count_error(upstream, "invalid")
            log.error("upstream %s sent an unreadable image: %s", upstream.base_url, exc)
            raise UpstreamUnavailable(upstream.base_url, "unreadable image") from exc
        rendered = Rendered(rendered.images, rendered.blurred or got.blurred)
        return Delivery(rendered, got.content_violation, generated_at)

    async def close(self) -> None:
        pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            await pool.aclose()

    # -- calls --------------------------------------------------------------------------

    def _pool(self, upstream: UpstreamEntry) -> httpx.AsyncClient:
        pool = self._pools.get(upstream.base_url)
        if pool is None:
            pool = httpx.AsyncClient(
                transport=self._transport,
                limits=httpx.Limits(
                    max_connections=upstream.max_connections,
                    max_keepalive_connections=upstream.max_connections,
                ),
                timeout=httpx.Timeout(upstream.timeout_s, connect=min(10.0, upstream.timeout_s)),
                follow_redirects=False,
            )
            self._pools[upstream.base_url] = pool
        return pool

    def _key(self, upstream: UpstreamEntry) -> str:
        key = self._environ.get(upstream.key_env, "")
        if not key:
            log.error(
                "UPSTREAM KEY MISSING: %s is not set, so %s cannot be called",
                upstream.key_env,
                upstream.base_url,
            )
            raise UpstreamUnavailable(upstream.base_url, f"{upstream.key_env} is not set")
        return key

    async def _call(
        self, client: UpstreamClient, entry: ModelEntry, request: UpstreamRequest, key: str
    ) -> UpstreamImages:
        upstream = client.upstream
        for attempt in (1, 2):
            response = await self._send(client, entry, request, key, retry=attempt == 1)
            if response is None:
                continue
            if response.status_code >= 500 and attempt == 1:
                log.warning(
                    "upstream %s answered %d; retrying once",
                    upstream.base_url,
                    response.status_code,
                )
                continue
            if response.status_code >= 400:
                raise _error(upstream, response)
            try:
                return await client.images(response)
            except (ValueError, httpx.HTTPError) as exc:
                self._count_error(upstream, "invalid")
                log.error("upstream %s sent no usable images: %s", upstream.base_url, exc)
                raise UpstreamUnavailable(upstream.base_url, str(exc)) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    async def _send(
        self,
        client: UpstreamClient,
        entry: ModelEntry,
        request: UpstreamRequest,
        key: str,
        *,
        retry: bool,
    ) -> httpx.Response | None:
        """The upstream's answer; None when it could not be reached and may be tried again."""
        upstream = client.upstream
        self.metrics.upstream_calls.labels(upstream.base_url).inc()
        began = time.monotonic()
        try:
            # A deadline for the whole call: httpx's own timeouts bound each read only.
            async with asyncio.timeout(upstream.timeout_s):
                response = await client.send(entry, request, key)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            self._count_error(upstream, "connect")
            log.warning("upstream %s unreachable: %s", upstream.base_url, exc)
            if retry:
                return None
            raise UpstreamUnavailable(upstream.base_url, "unreachable") from exc
        except (httpx.TimeoutException, TimeoutError) as exc:
            self._count_error(upstream, "timeout")
            log.warning("upstream %s timed out after %.0f s", upstream.base_url, upstream.timeout_s)
            raise UpstreamUnavailable(upstream.base_url, "timeout") from exc
        except httpx.HTTPError as exc:
            self._count_error(upstream, "transport")
            log.warning("upstream %s failed: %s", upstream.base_url, exc)
            raise UpstreamUnavailable(upstream.base_url, type(exc).__name__) from exc
        finally:
            self.metrics.upstream_seconds.labels(upstream.base_url).observe(
                time.monotonic() - began
            )
        if response.status_code >= 400:
            await response.aread()
            self._count_error(upstream, str(response.status_code))
        return response

    def _count_error(self, upstream: UpstreamEntry, reason: str) -> None:
        self.metrics.upstream_errors.labels(upstream.base_url, reason).inc()


def _upstream(entry: ModelEntry) -> UpstreamEntry:
    if entry.upstream is None:
        raise ValueError(f"model {entry.id!r} is not served by an upstream")
    return entry.upstream


def _error(upstream: UpstreamEntry, response: httpx.Response) -> Exception:
    """The domain error for a 4xx or 5xx answer (see the module docstring)."""
    status = response.status_code
    body = _error_body(response)
    message = _message(body) or response.reason_phrase or f"HTTP {status}"
    if status in _OPERATOR_STATUSES:
        log.error(
            "UPSTREAM %s %s (HTTP %d: %s): check %s and the account behind it",
            upstream.base_url,
            _OPERATOR_STATUSES[status],
            status,
            message,
            upstream.key_env,
        )
        return UpstreamUnavailable(upstream.base_url, f"HTTP {status}", retry_after_s=60)
    if status == 429 or status >= 500:
        log.warning("upstream %s answered %d: %s", upstream.base_url, status, message)
        return UpstreamUnavailable(
            upstream.base_url, f"HTTP {status}", retry_after_s=_retry_after(response)
        )
    # Venice's own error bodies travel as they are; others become Venice's {"error"}.
    passed = body if isinstance(body.get("error"), str) else {"error": message}
    return UpstreamRejected(status, message, passed)


def _error_body(response: httpx.Response) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _message(body: Mapping[str, Any]) -> str:
    error = body.get("error")
    if isinstance(error, str):
        return error
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return str(error["message"])  # OpenAI's {"error": {"message", "type", ...}}
    return ""


def _retry_after(response: httpx.Response) -> int:
    try:
        return max(1, min(300, int(response.headers.get("retry-after", ""))))
    except ValueError:
        return _RETRY_AFTER_S


def _local_options(upstream: UpstreamEntry, options: OutputOptions) -> OutputOptions | None:
    """The caller's output options, keeping only the post-processing the entry turns on;
    None when there is none."""
    local = dataclasses.replace(
        options,
        watermark=options.watermark and upstream.watermark,
        visible_mark=options.visible_mark if upstream.watermark else None,
        metadata=options.metadata if upstream.embed_metadata else None,
    )
    if not local.watermark and local.visible_mark is None and local.metadata is None:
        return None
    return local


def _finish(
    got: UpstreamImages,
    fmt: ImageFormat,
    options: OutputOptions | None,
    inspector: Inspector | None,
) -> Rendered:
    """The upstream's images as the caller asked for them. Untouched when nothing local
    applies and the format is already right; else decoded, checked, marked and encoded."""
    untouched = options is None and inspector is None
    if untouched and all(sniff_format(image) == fmt for image in got.images):
        return Rendered(list(got.images), blurred=False)
    pictures = [_open(image) for image in got.images]
    flags = inspector(pictures) if inspector is not None else None
    return render(pictures, flags, options or OutputOptions(fmt=fmt, watermark=False))


def _open(data: bytes) -> Image:
    with PILImage.open(io.BytesIO(data)) as image:
        image.load()
        return image.convert("RGB")
