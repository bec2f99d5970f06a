"""One client per upstream dialect, sharing one pooled `httpx.AsyncClient` per upstream.

A client builds the request (with the operator's key, never anything of the caller's),
sends it, and reads the images out of a successful answer. Deciding what a failure means
(retry, 503, pass a 4xx on) is the gateway's (`murano.gateway.gateway`).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import httpx

from murano import __version__
from murano.catalog.entries import ModelEntry, UpstreamEntry
from murano.gateway.translate import (
    UpstreamRequest,
    decode_b64,
    openai_body,
    openai_edit_form,
    venice_body,
    venice_edit_body,
    venice_edit_path,
)

__all__ = ["OpenAIClient", "UpstreamClient", "UpstreamImages", "VeniceClient", "client_for"]


@dataclass(frozen=True, slots=True)
class UpstreamImages:
    """Encoded images as the upstream sent them, and its safety flags (Venice's headers)."""

    images: list[bytes]
    blurred: bool = False
    content_violation: bool = False


class UpstreamClient:
    """The common part: POST a JSON body to `path` under the upstream's base URL."""

    path = ""

    def __init__(self, upstream: UpstreamEntry, http: httpx.AsyncClient) -> None:
        self.upstream = upstream
        self.http = http

    def body(self, entry: ModelEntry, request: UpstreamRequest) -> dict[str, Any]:
        raise NotImplementedError

    async def send(self, entry: ModelEntry, request: UpstreamRequest, key: str) -> httpx.Response:
        if request.params.is_edit:
            return await self.send_edit(entry, request, key)
        return await self._post(self.path, key, json=self.body(entry, request))

    async def send_edit(
        self, entry: ModelEntry, request: UpstreamRequest, key: str
    ) -> httpx.Response:
        raise NotImplementedError

    async def _post(self, path: str, key: str, **content: Any) -> httpx.Response:
        return await self.http.post(
            self.upstream.base_url.rstrip("/") + path,
            headers={"Authorization": f"Bearer {key}", "User-Agent": f"murano/{__version__}"},
            timeout=self.upstream.timeout_s,
            **content,
        )

    async def images(self, response: httpx.Response) -> UpstreamImages:
        """The images of a 2xx answer; ValueError when it holds none."""
        raise NotImplementedError


class VeniceClient(UpstreamClient):
    path = "/image/generate"

    def body(self, entry: ModelEntry, request: UpstreamRequest) -> dict[str, Any]:
        return venice_body(entry, self.upstream, request)

    async def send_edit(
        self, entry: ModelEntry, request: UpstreamRequest, key: str
    ) -> httpx.Response:
        body = await asyncio.to_thread(venice_edit_body, entry, self.upstream, request)
        return await self._post(venice_edit_path(request), key, json=body)

    async def images(self, response: httpx.Response) -> UpstreamImages:
        if response.headers.get("content-type", "").startswith("image/"):
            # The edit endpoints answer with the image itself.
            if not response.content:
                raise ValueError("the answer is an empty image")
            return UpstreamImages(
                [response.content],
                blurred=response.headers.get("x-venice-is-blurred") == "true",
                content_violation=response.headers.get("x-venice-is-content-violation") == "true",
            )
        data = _json(response)
        images = data.get("images")
        if not isinstance(images, list) or not images:
            raise ValueError("the answer has no images")
        return UpstreamImages(
            [decode_b64(item) for item in images],
            blurred=response.headers.get("x-venice-is-blurred") == "true",
            content_violation=response.headers.get("x-venice-is-content-violation") == "true",
        )


class OpenAIClient(UpstreamClient):
    path = "/images/generations"

    def body(self, entry: ModelEntry, request: UpstreamRequest) -> dict[str, Any]:
        return openai_body(entry, self.upstream, request)

    async def send_edit(
        self, entry: ModelEntry, request: UpstreamRequest, key: str
    ) -> httpx.Response:
        fields, files = await asyncio.to_thread(openai_edit_form, entry, self.upstream, request)
        return await self._post("/images/edits", key, data=fields, files=files)

    async def images(self, response: httpx.Response) -> UpstreamImages:
        data = _json(response).get("data")
        if not isinstance(data, list) or not data:
            raise ValueError("the answer has no data")
        return UpstreamImages([await self._image(item) for item in data])

    async def _image(self, item: object) -> bytes:
        if not isinstance(item, dict):
            raise ValueError("a data item is not an object")
        if item.get("b64_json"):
            return decode_b64(item["b64_json"])
        url = item.get("url")
        if isinstance(url, str) and url.startswith("data:"):
            return decode_b64(url)
        if isinstance(url, str) and url.startswith(("https://", "http://")):
            # dall-e's default: a short-lived link to the image (no key: it is pre-signed).
            fetched = await self.http.get(url, timeout=self.upstream.timeout_s)
            fetched.raise_for_status()
            return fetched.content
        raise ValueError("a data item has neither b64_json nor url")


def client_for(upstream: UpstreamEntry, http: httpx.AsyncClient) -> UpstreamClient:
    if upstream.kind == "venice":
        return VeniceClient(upstream, http)
    return OpenAIClient(upstream, http)


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError as exc:
        raise ValueError("the answer is not JSON") from exc
    if not isinstance(data, dict):
        raise ValueError("the answer is not a JSON object")
    return data
