"""Prometheus metrics, one registry per app (so several apps in one process, as in the
tests, do not collide). Served at `GET /metrics`. Batch sizes, queue waits and pipeline
(device) time are labelled by `model` and `replica` (the device worker's name, see
`murano.engine.devices`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

__all__ = ["Metrics"]

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class Metrics:
    def __init__(self) -> None:
        self._dependencies: _DependencyCollector | None = None
        self.registry = CollectorRegistry()
        r = self.registry
        self.queue_depth = Gauge(
            "murano_queue_depth", "Jobs waiting per model", ["model"], registry=r
        )
        self.batch_images = Histogram(
            "murano_batch_images",
            "Images per pipeline call",
            ["model", "replica"],
            buckets=(1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64),
            registry=r,
        )
        self.images = Counter("murano_images_generated", "Images generated", ["model"], registry=r)
        self.queue_seconds = Histogram(
            "murano_queue_seconds",
            "Time jobs wait in the queue",
            ["model", "replica"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.inference_seconds = Histogram(
            "murano_inference_seconds",
            "Pipeline time per batch",
            ["model", "replica"],
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

        # Upstream APIs (models served through the gateway), by base URL.
        self.upstream_calls = Counter(
            "murano_upstream_calls", "HTTP calls to upstream APIs", ["upstream"], registry=r
        )
        self.upstream_errors = Counter(
            "murano_upstream_errors",
            "Failed upstream calls: HTTP status, 'timeout', 'connect' or 'invalid'",
            ["upstream", "reason"],
            registry=r,
        )
        self.upstream_seconds = Histogram(
            "murano_upstream_seconds",
            "Upstream call latency",
            ["upstream"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )

    def watch_dependencies(self, snapshot: Callable[[], Mapping[str, Any]]) -> None:
        """Export `murano_dependency_up` and `murano_dependency_outages_total` from
        `snapshot()` (name → a state with `up` and `outages`) at every scrape; once."""
        if self._dependencies is None:
            self._dependencies = _DependencyCollector(snapshot)
            self.registry.register(self._dependencies)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _DependencyCollector:
    def __init__(self, snapshot: Callable[[], Mapping[str, Any]]) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        states = self.snapshot()
        up = GaugeMetricFamily(
            "murano_dependency_up",
            "1 when the service answers, 0 during an outage",
            labels=["dependency"],
        )
        outages = CounterMetricFamily(
            "murano_dependency_outages",
            "Outages of a service murano depends on",
            labels=["dependency"],
        )
        for name, state in states.items():
            up.add_metric([name], 1.0 if state.up else 0.0)
            outages.add_metric([name], float(state.outages))
        yield up
        yield outages
