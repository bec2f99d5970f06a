"""A small client of murano's own API for the CLI: one generation, synchronous or followed
through the job's event stream when the server answers `202 Accepted`, and the server's
error message (never a traceback) when it refuses."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx

__all__ = ["ApiError", "Client", "Progress", "ServerEvent"]

API = "/api/v1"


class ApiError(Exception):
    """The server refused (`status` is its HTTP status) or could not be reached (0)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

    def __str__(self) -> str:
        return self.message if self.status == 0 else f"{self.message} (HTTP {self.status})"


@dataclass(frozen=True)
class ServerEvent:
    event: str
    data: dict[str, Any]


# Called on every event of an asynchronous job: queued, started, progress.
Progress = Callable[[ServerEvent], None]


class Client:
    def __init__(
        self,
        url: str,
        key: str | None,
        *,
        timeout_s: float,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.url = url.rstrip("/")
        timeout = httpx.Timeout(10.0, read=timeout_s)
        self._http = httpx.Client(
            base_url=self.url, headers=headers, timeout=timeout, transport=transport
        )

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self._http.close()

    def default_model(self) -> str:
        """The model marked `default` in the server's traits, else its first model."""
        traits = self._get(f"{API}/models/traits", type="image").get("data", {})
        default = traits.get("default") if isinstance(traits, dict) else None
        if isinstance(default, str):
            return default
        models = self._get(f"{API}/models", type="image").get("data", [])
        if not models:
            raise ApiError(0, f"the server at {self.url} serves no image models")
        return str(models[0]["id"])

    def generate(self, body: dict[str, Any], on_event: Progress) -> dict[str, Any]:
        """Venice's `/image/generate` response for `body`. Asks for an asynchronous job
        (`Prefer: respond-async`) and follows its events when the server offers one."""
        response = self._send(
            "POST", f"{API}/image/generate", json=body, headers={"Prefer": "respond-async"}
        )
        if response.status_code == 202:
            return self._follow(response.json(), on_event)
        return _json(response)

    def _follow(self, job: dict[str, Any], on_event: Progress) -> dict[str, Any]:
        on_event(ServerEvent("queued", job))
        headers = {"Accept": "text/event-stream"}
        try:
            with self._http.stream("GET", job["links"]["events"], headers=headers) as stream:
                if stream.status_code != 200:
                    stream.read()
                    raise _error(stream)
                for event in _server_events(stream.iter_lines()):
                    if event.event == "completed":
                        result: dict[str, Any] = event.data["result"]
                        return result
                    if event.event in ("failed", "cancelled"):
                        message = event.data.get("error") or f"the generation was {event.event}"
                        raise ApiError(int(event.data.get("status", 500)), str(message))
                    on_event(event)
        except httpx.TransportError as exc:
            raise ApiError(0, f"lost the connection to {self.url}: {exc}") from None
        except KeyboardInterrupt:
            # An async job outlives its connection: cancel it, or it runs on and is charged.
            self._cancel(job)
            raise
        raise ApiError(0, "the server closed the event stream before the images were ready")

    def _cancel(self, job: dict[str, Any]) -> None:
        with contextlib.suppress(httpx.HTTPError):
            self._http.delete(job["links"]["self"], timeout=5.0)

    def _get(self, path: str, **params: str) -> dict[str, Any]:
        return _json(self._send("GET", path, params=params))

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return self._http.request(method, path, **kwargs)
        except httpx.TimeoutException:
            raise ApiError(0, f"no answer from {self.url} in time (try --timeout)") from None
        except httpx.TransportError as exc:
            raise ApiError(
                0, f"cannot reach the server at {self.url} ({exc}); is `murano serve` running?"
            ) from None


def _json(response: httpx.Response) -> dict[str, Any]:
    if response.status_code >= 400:
        raise _error(response)
    try:
        body: dict[str, Any] = response.json()
    except ValueError:
        raise ApiError(response.status_code, "the server's answer is not JSON") from None
    return body


def _error(response: httpx.Response) -> ApiError:
    """The server's own message: Venice's `error`, or the status line."""
    message = ""
    try:
        body = response.json()
        if isinstance(body, dict):
            message = str(body.get("error") or body.get("message") or "")
    except ValueError:
        pass
    return ApiError(response.status_code, message or response.reason_phrase or "request failed")


def _server_events(lines: Iterator[str]) -> Iterator[ServerEvent]:
    """Server-sent events: `event:` and `data:` lines, a blank line ends each one."""
    event, data = "message", list[str]()
    for line in lines:
        if not line:
            if data:
                yield ServerEvent(event, json.loads("\n".join(data)))
            event, data = "message", list[str]()
        elif line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))
    if data:
        yield ServerEvent(event, json.loads("\n".join(data)))
