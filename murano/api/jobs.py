"""Async job routes: `POST /image/jobs` (with an optional webhook), `Prefer: respond-async`
on `POST /image/generate` (through `respond_async`), and `GET|DELETE /image/jobs/{id}`,
`GET /image/jobs/{id}/events` (Server-Sent Events), `GET /image/jobs`.

A job is answered `202` with its id, queue position and links, and a `Location` header, only
after everything a synchronous request checks first (validation, auth, rate limit, balance
reservation, queue room): a bad request is still a 4xx, not a job. A key sees only its own
jobs; another key's job id is a 404.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse

from murano.accounts.credentials import Credentials
from murano.api.async_jobs import DEFAULT_WEBHOOK_EVENTS, AsyncJobs, links
from murano.api.deps import CurrentCredentials, CurrentPrincipal, Service
from murano.api.image import native_job
from murano.api.protocol import GenerateImageRequest, JobRequest
from murano.api.serving import ImageService
from murano.api.streaming import SSE_HEADERS
from murano.errors import InvalidRequest

__all__ = ["prefers_async", "respond_async", "router"]

router = APIRouter(prefix="/api/v1")


def _jobs(request: Request) -> AsyncJobs:
    jobs: AsyncJobs = request.app.state.jobs
    return jobs


Jobs = Annotated[AsyncJobs, Depends(_jobs)]


def prefers_async(request: Request) -> bool:
    """RFC 7240: `Prefer: respond-async` among the header's preferences."""
    return any(
        part.split(";")[0].strip().lower() == "respond-async"
        for value in request.headers.getlist("prefer")
        for part in value.split(",")
    )


async def respond_async(
    request: Request,
    body: GenerateImageRequest,
    credentials: Credentials,
    service: ImageService,
    *,
    webhook: dict[str, Any] | None = None,
) -> Response:
    """Queue `body` as an async job and answer 202."""
    received = time.monotonic()
    jobs = _jobs(request)
    if body.return_binary:
        raise InvalidRequest(
            "return_binary",
            "return_binary is not available for async jobs: their result is JSON; omit it.",
        )
    job, echo = native_job(body, service)
    request.state.log_fields = {"model": job.params.model_id, "images": job.params.images}
    if webhook is not None:
        if jobs.dispatcher is None:
            raise InvalidRequest("webhook_url", "Webhooks are not enabled on this server.")
        await jobs.dispatcher.policy.check(webhook["url"])
    live = await jobs.submit(
        credentials,
        job,
        echo,
        endpoint="image/generate",
        received=received,
        webhook=webhook,
    )
    content = {
        "id": live.id,
        "status": "queued",
        "queuePosition": live.position,
        "links": links(live.id),
    }
    headers = {"Location": links(live.id)["self"], "Preference-Applied": "respond-async"}
    return JSONResponse(content, status_code=202, headers=headers)


@router.post("/image/jobs", response_model=None, status_code=202)
async def create_job(
    body: JobRequest, request: Request, credentials: CurrentCredentials, service: Service
) -> Response:
    webhook = None
    if body.webhook_url is not None:
        events = list(body.webhook_events or DEFAULT_WEBHOOK_EVENTS)
        webhook = {"url": body.webhook_url, "events": events}
    elif body.webhook_events is not None:
        raise InvalidRequest("webhook_events", "webhook_events needs a webhook_url.")
    return await respond_async(request, body, credentials, service, webhook=webhook)


@router.get("/image/jobs")
async def list_jobs(principal: CurrentPrincipal, jobs: Jobs, limit: int = 20) -> dict[str, Any]:
    limit = max(1, min(limit, 100))
    return {"data": await jobs.recent(principal, limit), "object": "list"}


@router.get("/image/jobs/{job_id}")
async def get_job(job_id: str, principal: CurrentPrincipal, jobs: Jobs) -> dict[str, Any]:
    return await jobs.view(principal, job_id)


@router.delete("/image/jobs/{job_id}")
async def cancel_job(job_id: str, principal: CurrentPrincipal, jobs: Jobs) -> dict[str, Any]:
    return await jobs.cancel(principal, job_id)


@router.get("/image/jobs/{job_id}/events", response_model=None)
async def job_events(
    job_id: str,
    principal: CurrentPrincipal,
    jobs: Jobs,
    last_event_id: Annotated[str | None, Header()] = None,
) -> Response:
    try:
        after = int(last_event_id or 0)
    except ValueError:
        after = 0
    stream = await jobs.events(principal, job_id, after)
    return StreamingResponse(stream, media_type="text/event-stream", headers=SSE_HEADERS)
