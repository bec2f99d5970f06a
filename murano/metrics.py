"""Prometheus metrics, one registry per app (so several apps in one process, as in the
tests, do not collide). Served at `GET /metrics`."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["Metrics"]

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.queue_depth = Gauge(
            "murano_queue_depth", "Jobs waiting per model", ["model"], registry=r
        )
        self.batch_images = Histogram(
            "murano_batch_images",
            "Images per pipeline call",
            ["model"],
            buckets=(1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64),
            registry=r,
        )
        self.images = Counter("murano_images_generated", "Images generated", ["model"], registry=r)
        self.queue_seconds = Histogram(
            "murano_queue_seconds",
            "Time jobs wait in the queue",
            ["model"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.inference_seconds = Histogram(
            "murano_inference_seconds",
            "Pipeline time per batch",
            ["model"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.postprocess_seconds = Histogram(
            "murano_postprocess_seconds",
            "Safety, watermark, metadata and encoding time per job",
            ["model"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.job_seconds = Histogram(
            "murano_job_seconds",
            "Time jobs spend in each state (queued, loading, running, postprocessing, sending)",
            ["model", "state"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.jobs_in_flight = Gauge(
            "murano_jobs_in_flight", "Jobs queued, loading, running or being sent", registry=r
        )
        self.responses = Counter(
            "murano_responses",
            "HTTP responses by route and status",
            ["route", "status"],
            registry=r,
        )
        self.model_loaded = Gauge(
            "murano_model_loaded",
            "1 when the model is resident on its device, 0 when not, -1 when it failed",
            ["model"],
            registry=r,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
