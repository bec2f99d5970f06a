"""Throughput under concurrency: murano's batching scheduler against a naive server and the
bare pipeline's ceiling, on the embedded default model ("murano-tiny").

At each load (1, 4, 16, 64 clients) the ways of making images take turns, in rounds
(ceiling, murano, naive, naive thread-pool; again), so that a burst of load from elsewhere
on the machine hits one round rather than one way; each way's rate is the median over its
rounds:

* murano: a real `murano serve` subprocess (`MURANO_MAX_BATCH_IMAGES`=16), driven by
  `clients` asyncio tasks that each send requests back to back (httpx, JSON with a base64
  WebP, decoded) for the round's time; the requests then in flight finish and count.
* naive: `naive_server.py` (FastAPI + diffusers, one global lock, one pipeline call per
  request, the same WebP encode), driven the same way; once calling the pipeline on one
  dedicated thread (the baseline of the targets), once from FastAPI's thread pool.
* ceiling: this process calling the same pipeline in a loop with the batch size murano
  could at best form (the client count, capped at its batch limit), no encode, no HTTP.

images/s = images answered / (last answer − start). Latency percentiles pool the rounds
and leave out each client's first request of a round (they all start at once, a transient)
when enough remain. The pipeline's own batch scaling is measured first: on a small CPU it
bounds what any batching can gain.

    .venv/bin/python benchmarks/throughput.py [--quick] [--out DIR]
"""

from __future__ import annotations

import asyncio
import base64
import math
import re
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from _common import (
    PYTHON,
    Outcome,
    ServerSpec,
    Table,
    benchmark_main,
    fmt,
    free_port,
    median,
    murano_spec,
    percentile,
    running_servers,
    write_result,
)
from _models import build_tiny, load_pipeline

__all__ = ["main", "run"]

PROMPT = "a lighthouse on a cliff at dusk, oil painting"
MODEL_ID = "murano-tiny"
TARGET_CEILING = 0.9
TARGET_NAIVE = 2.0
TARGET_CLIENTS = 16


# The servers measured at each load, in the order they take turns within a round.
SERVERS = ("murano", "naive", "naive-pool")


@dataclass(frozen=True)
class Config:
    size: int
    clients: tuple[int, ...]
    # Each way runs `rounds` times per load, `round_s` seconds each.
    rounds: int
    round_s: float
    max_batch: int
    batches: tuple[int, ...]
    # The scaling pass times each batch size for at least this long (and 3 calls).
    scaling_s: float
    # Sizes whose offline batch scaling is shown too (batches 1, 4, 16), for comparison.
    other_sizes: tuple[int, ...] = ()
    # Also measure the naive server with the thread-pool handler (information only).
    thread_pool: bool = True

    @property
    def servers(self) -> tuple[str, ...]:
        return SERVERS if self.thread_pool else SERVERS[:2]


# 256² keeps a full run to a few minutes on a 2-core CPU and is the size where batching
# still pays there (see the 512² scaling table in the results).
FULL = Config(
    size=256,
    clients=(1, 4, 16, 64),
    rounds=3,
    round_s=3.0,
    max_batch=16,
    batches=(1, 2, 4, 8, 16),
    scaling_s=2.0,
    other_sizes=(512,),
)
QUICK = Config(
    size=64,
    clients=(1, 4, 16, 64),
    rounds=1,
    round_s=0.5,
    max_batch=16,
    batches=(1, 4, 16),
    scaling_s=0.2,
    thread_pool=False,
)


@dataclass
class Load:
    images_per_s: float
    latencies: list[float]
    requests: int
    # murano only, from /metrics: mean images and seconds per pipeline call.
    mean_batch: float = math.nan
    call_s: float = math.nan

    @property
    def p50(self) -> float:
        return percentile(self.latencies, 50)

    @property
    def p99(self) -> float:
        return percentile(self.latencies, 99)


# -- clients ----------------------------------------------------------------------------


async def _drive(base: str, clients: int, duration_s: float, body: dict[str, Any]) -> Load:
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    records: list[tuple[int, float, float]] = []  # (request index of its client, start, end)
    async with httpx.AsyncClient(limits=limits, timeout=900) as client:
        start = time.perf_counter()
        deadline = start + duration_s

        async def one_client(number: int) -> None:
            index = 0
            while index == 0 or time.perf_counter() < deadline:
                began = time.perf_counter()
                seed = 1 + number * 100_000 + index
                response = await client.post(
                    f"{base}/api/v1/image/generate", json={**body, "seed": seed}
                )
                response.raise_for_status()
                base64.b64decode(response.json()["images"][0])
                records.append((index, began, time.perf_counter()))
                index += 1

        await asyncio.gather(*(one_client(n) for n in range(clients)))
    last = max(end for _, _, end in records)
    steady = [end - began for index, began, end in records if index > 0]
    latencies = steady if len(steady) >= clients else [end - b for _, b, end in records]
    return Load(len(records) / (last - start), latencies, len(records))


def _body(config: Config, steps: int, cfg: float) -> dict[str, Any]:
    return {
        "model": MODEL_ID,
        "prompt": PROMPT,
        "width": config.size,
        "height": config.size,
        "steps": steps,
        "cfg_scale": cfg,
        "format": "webp",
        "safe_mode": False,
        "hide_watermark": True,
    }


_COUNTERS = ("batch_images_sum", "batch_images_count", "inference_seconds_sum")


def _counters(base: str) -> dict[str, float]:
    """murano's images-per-call histogram and pipeline seconds, from /metrics."""
    text = httpx.get(f"{base}/metrics", timeout=30).text
    found = {}
    for name in _COUNTERS:
        match = re.search(rf"^murano_{name}\{{[^}}]*\}} (\S+)$", text, re.M)
        found[name] = float(match.group(1)) if match else 0.0
    return found


def warm_up(base: str, config: Config, body: dict[str, Any]) -> None:
    """Single requests, then a burst of one full batch."""
    asyncio.run(_drive(base, 1, 0.0, body))
    asyncio.run(_drive(base, config.max_batch, 0.0, body))


def _combine(rounds: list[Load]) -> Load:
    return Load(
        median([r.images_per_s for r in rounds]),
        [latency for r in rounds for latency in r.latencies],
        sum(r.requests for r in rounds),
    )


# -- the offline ceiling ----------------------------------------------------------------


@dataclass(frozen=True)
class Offline:
    """The pipeline called in this process, as murano's backend calls it."""

    pipe: Any
    steps: int
    cfg: float

    def call(self, batch: int, size: int, seed: int) -> float:
        import torch

        began = time.perf_counter()
        with torch.inference_mode():
            self.pipe(
                prompt=[PROMPT] * batch,
                width=size,
                height=size,
                num_inference_steps=self.steps,
                guidance_scale=self.cfg,
                generator=[torch.Generator("cpu").manual_seed(seed + i) for i in range(batch)],
                output_type="pil",
            )
        return time.perf_counter() - began

    def scaling(self, batch: int, size: int, min_s: float) -> Load:
        """Per-call times (after one warm-up call); images/s from the median call."""
        self.call(batch, size, 0)
        times: list[float] = []
        while len(times) < 3 or sum(times) < min_s:
            times.append(self.call(batch, size, 1 + len(times) * batch))
        return Load(batch / median(times), times, len(times))

    def loop(self, batch: int, size: int, duration_s: float) -> Load:
        """Calls back to back for `duration_s` (at least one), as a server round runs."""
        times: list[float] = []
        start = time.perf_counter()
        while not times or time.perf_counter() - start < duration_s:
            times.append(self.call(batch, size, 1 + len(times) * batch))
        return Load(batch * len(times) / (time.perf_counter() - start), times, len(times))


# -- the run ----------------------------------------------------------------------------


def _servers(work: Path, config: Config) -> tuple[list[ServerSpec], Path]:
    """murano and the two naive servers (see `naive_server.py`) on the same model
    directory. All run at once; each idles while another is measured."""
    data_dir = work / "murano"
    model_dir = build_tiny(data_dir)
    env = {
        "MURANO_MAX_BATCH_IMAGES": str(config.max_batch),
        "MURANO_MAX_QUEUE": str(4 * max(config.clients)),
    }
    specs = [murano_spec(data_dir, env=env)]
    for handler in ("device-thread", "thread-pool")[: len(config.servers) - 1]:
        port = free_port()
        argv = [PYTHON, str(Path(__file__).with_name("naive_server.py"))]
        argv += ["--model-dir", str(model_dir), "--port", str(port), "--handler", handler]
        specs.append(ServerSpec(argv, port, work / f"naive-{handler}.log"))
    return specs, model_dir


@dataclass
class Level:
    clients: int
    # By way: "ceiling" and each server measured.
    loads: dict[str, Load]
    batch: int

    def load(self, way: str) -> Load:
        return self.loads.get(way) or Load(math.nan, [], 0)

    def ratio(self, way: str, other: str) -> float:
        return self.load(way).images_per_s / self.load(other).images_per_s


# size → batch → the scaling pass's result
Scaling = dict[int, dict[int, Load]]


def measure_level(
    clients: int, bases: dict[str, str], offline: Offline, config: Config, body: dict[str, Any]
) -> Level:
    batch = min(clients, config.max_batch)
    rounds: dict[str, list[Load]] = {way: [] for way in ("ceiling", *config.servers)}
    before = _counters(bases["murano"])
    for _ in range(config.rounds):
        rounds["ceiling"].append(offline.loop(batch, config.size, config.round_s))
        for way in config.servers:
            rounds[way].append(asyncio.run(_drive(bases[way], clients, config.round_s, body)))
    after = _counters(bases["murano"])
    level = Level(clients, {way: _combine(loads) for way, loads in rounds.items()}, batch)
    delta = {name: after[name] - before[name] for name in _COUNTERS}
    calls = delta["batch_images_count"]
    if calls:
        level.loads["murano"].mean_batch = delta["batch_images_sum"] / calls
        level.loads["murano"].call_s = delta["inference_seconds_sum"] / calls
    return level


def measure(config: Config, log: Callable[[str], None]) -> tuple[list[Level], Scaling]:
    from murano.engine.tiny import DEFAULT_MODEL_CFG, DEFAULT_MODEL_STEPS

    body = _body(config, DEFAULT_MODEL_STEPS, DEFAULT_MODEL_CFG)
    levels: list[Level] = []
    scaling: Scaling = {config.size: {}}
    scaling.update({size: {} for size in config.other_sizes})
    with tempfile.TemporaryDirectory(prefix="murano-bench-") as tmp:
        specs, model_dir = _servers(Path(tmp), config)
        with running_servers(*specs) as urls:
            bases = dict(zip(config.servers, urls, strict=True))
            offline = Offline(load_pipeline(model_dir), DEFAULT_MODEL_STEPS, DEFAULT_MODEL_CFG)
            for size, by_batch in scaling.items():
                batches = config.batches if size == config.size else (1, 4, 16)
                for batch in batches:
                    by_batch[batch] = offline.scaling(batch, size, config.scaling_s)
                    rate = by_batch[batch].images_per_s
                    log(f"offline {size}² batch {batch}: {rate:.2f} images/s")
            for base in bases.values():
                warm_up(base, config, body)
            for clients in config.clients:
                level = measure_level(clients, bases, offline, config, body)
                levels.append(level)
                rates = ", ".join(f"{w} {ld.images_per_s:.2f}" for w, ld in level.loads.items())
                log(f"{clients} clients, images/s: {rates}")
    return levels, scaling


# -- report -----------------------------------------------------------------------------


def _times(ratio: float) -> str:
    return "n/a" if math.isnan(ratio) else f"{ratio:.2f}×"


def _rate_table(levels: list[Level]) -> Table:
    rows = []
    for lv in levels:
        c = lv.loads["ceiling"]
        rows.append(
            [
                str(lv.clients),
                *(fmt(lv.load(way).images_per_s, 2) for way in SERVERS),
                f"{fmt(c.images_per_s, 2)} (batch {lv.batch})",
                _times(lv.ratio("murano", "ceiling")),
                _times(lv.ratio("murano", "naive")),
                _times(lv.ratio("murano", "naive-pool")),
            ]
        )
    headers = ["clients", "murano", "naive", "naive, thread-pool handler", "ceiling"]
    headers += ["murano / ceiling", "murano / naive", "murano / naive thread-pool"]
    return Table(headers, rows)


def _latency_table(levels: list[Level]) -> Table:
    rows = []
    for lv in levels:
        m = lv.loads["murano"]
        row = [str(lv.clients)]
        for way in SERVERS:
            row += [fmt(lv.load(way).p50), fmt(lv.load(way).p99)]
        rows.append([*row, fmt(m.mean_batch, 1), fmt(m.call_s)])
    headers = ["clients", "murano p50", "murano p99", "naive p50", "naive p99"]
    headers += ["naive thread-pool p50", "naive thread-pool p99"]
    headers += ["murano images per call", "murano s per call"]
    return Table(headers, rows)


def _scaling_table(by_batch: dict[int, Load]) -> Table:
    base = by_batch[min(by_batch)].images_per_s
    rows = [
        [
            str(b),
            fmt(ld.p50),
            fmt(ld.p99),
            fmt(ld.images_per_s, 2),
            f"{ld.images_per_s / base:.2f}×",
        ]
        for b, ld in by_batch.items()
    ]
    return Table(["batch", "p50 s per call", "p99 s per call", "images/s", "× batch 1"], rows)


def report(config: Config, levels: list[Level], scaling: Scaling, quick: bool) -> str:
    from murano.engine.tiny import DEFAULT_MODEL_CFG, DEFAULT_MODEL_STEPS

    parts = [
        f"Model: murano-tiny (the embedded default model) at {config.size}×{config.size}, "
        f"{DEFAULT_MODEL_STEPS} steps, cfg {DEFAULT_MODEL_CFG:g} (its defaults). At each load "
        f"the ways take turns for {config.rounds} round(s) of {config.round_s:g} s (the "
        "requests in flight at the end of a round finish and count); images/s is the median "
        "over the rounds, latencies pool them. murano runs with "
        f"MURANO_MAX_BATCH_IMAGES={config.max_batch} and no batch wait; every request asks "
        'for `safe_mode: false`, `hide_watermark: true`, WebP. "naive" calls the pipeline '
        'on one dedicated thread (the baseline of the targets); "naive, thread-pool '
        'handler" is the same server with a plain `def` handler, so torch is called from '
        "FastAPI's many pool threads (see `naive_server.py`). The ceiling is this process "
        "calling the pipeline back to back with batch = clients (at most "
        f"{config.max_batch}). The load generator runs on the same CPU as the servers.",
        "",
        "## Images per second",
        "",
        _rate_table(levels).markdown(),
        "",
        "## Latency per request (s) and murano's batches",
        "",
        '"images per call" and "s per call" are murano\'s mean batch and pipeline time '
        "per batch during the load (from /metrics), to compare with the offline call times "
        "below. The ceiling's latencies, per pipeline call, are in the scaling tables.",
        "",
        _latency_table(levels).markdown(),
        "",
    ]
    for size, by_batch in scaling.items():
        parts += [
            f"## The pipeline's batch scaling at {size}×{size} (offline, no encode)",
            "",
            "images/s = batch / median call time.",
            "",
            _scaling_table(by_batch).markdown(),
            "",
        ]
    parts += ["## Targets", "", _verdict(config, levels, scaling, quick)]
    return "\n".join(parts)


def _noise_warning(scaling: Scaling) -> list[str]:
    """A warning when the offline calls of one shape varied so much that the machine was
    evidently busy with other work (a quiet machine keeps them within ~20%)."""
    spread = max(
        max(ld.latencies) / median(ld.latencies) for b in scaling.values() for ld in b.values()
    )
    if spread < 1.5:
        return []
    return [
        f"- **Noisy run**: identical offline pipeline calls varied up to {spread:.1f}× "
        "(slowest over median), so the machine was busy with other work; the numbers and "
        "verdicts below are not reliable. Re-run on a quiet machine."
    ]


def _verdict(config: Config, levels: list[Level], scaling: Scaling, quick: bool) -> str:
    if quick:
        return "Quick mode: sizes and durations too small to judge; run without `--quick`."
    at = next((lv for lv in levels if lv.clients == TARGET_CLIENTS), None)
    if at is None:
        return f"No run at {TARGET_CLIENTS} clients."
    vs_ceiling, vs_naive = at.ratio("murano", "ceiling"), at.ratio("murano", "naive")
    m, ceiling = at.loads["murano"], at.loads["ceiling"]
    by_batch = scaling[config.size]
    single = by_batch[min(by_batch)].images_per_s
    best = max(by_batch, key=lambda b: by_batch[b].images_per_s)
    best_gain = by_batch[best].images_per_s / single
    lines = [
        *_noise_warning(scaling),
        f"- At {TARGET_CLIENTS} clients murano reaches {vs_ceiling:.2f}× the offline ceiling "
        f"(target ≥ {TARGET_CEILING}×): **{'met' if vs_ceiling >= TARGET_CEILING else 'missed'}**.",
        f"- At {TARGET_CLIENTS} clients murano serves {vs_naive:.2f}× the naive server "
        f"(target ≥ {TARGET_NAIVE:g}×): **{'met' if vs_naive >= TARGET_NAIVE else 'missed'}**.",
        f"- Offline at {config.size}² (scaling table), batch {at.batch} makes "
        f"{by_batch[at.batch].images_per_s / single:.2f}× the images/s of batch 1"
        + (f", and the best batch ({best}) {best_gain:.2f}×" if best != at.batch else "")
        + ". A batching server can beat a one-at-a-time one by about that much, plus "
        "whatever the naive server loses to its own per-request work.",
    ]
    if best_gain < TARGET_NAIVE:
        lines.append(
            f"- So batching alone cannot reach the ≥ {TARGET_NAIVE:g}× target at this size on "
            "this machine: two CPU cores are already kept busy by one image, and a batch "
            "saves only per-call overhead."
        )
    for size in config.other_sizes:
        other = scaling[size]
        top = max(other)
        ratio = other[top].images_per_s / other[min(other)].images_per_s
        lines.append(f"- At {size}² batch {top} makes {ratio:.2f}× the images/s of batch 1.")
    if m.mean_batch < 0.75 * at.batch:
        lines.append(
            f"- murano formed batches of {m.mean_batch:.1f} images on average at "
            f"{TARGET_CLIENTS} clients, not {at.batch}: with no batch wait the worker starts "
            "as soon as one job is queued, while the other clients are still receiving "
            "their previous images and sending the next. `MURANO_BATCH_WAIT_MS` trades a "
            "little latency for fuller batches."
        )
    if vs_ceiling < TARGET_CEILING and not math.isnan(m.call_s):
        inside = m.mean_batch / m.call_s
        lines.append(
            f"- Inside murano the pipeline itself made {inside:.1f} images/s "
            f"({m.mean_batch:.1f} images per {m.call_s:.3f} s call) against the ceiling's "
            f"{ceiling.images_per_s:.1f}. The rest of the gap is work the ceiling leaves "
            "out, and here it runs on the same two cores as the pipeline: the WebP encode on "
            "the post-processing threads, JSON, base64 and compression on the event loop, "
            "and the load generator itself; each of those threads also preempts one of "
            "torch's two OpenMP threads, which slows the pipeline call. On a GPU they run "
            "beside the device instead."
        )
    pool = at.ratio("naive", "naive-pool")
    if pool > 1.2:
        lines.append(
            f"- The naive server with a plain `def` handler made {1 / pool:.2f}× the images/s "
            "of the same server calling the pipeline on one thread: each of FastAPI's pool "
            "threads that calls torch gets its own OpenMP workers, and they fight over the "
            f"cores. Against it murano reaches {at.ratio('murano', 'naive-pool'):.2f}×: one "
            f"device thread, as murano's engine has, is worth {pool:.2f}× here by itself."
        )
    return "\n".join(lines)


def summary(levels: list[Level], scaling: Scaling, quick: bool) -> str:
    at = next((lv for lv in levels if lv.clients == TARGET_CLIENTS), None)
    if at is None:
        return f"no run at {TARGET_CLIENTS} clients"
    vs_ceiling, vs_naive = at.ratio("murano", "ceiling"), at.ratio("murano", "naive")
    text = (
        f"{TARGET_CLIENTS} clients: murano / ceiling {vs_ceiling:.2f}×, "
        f"murano / naive {vs_naive:.2f}×"
    )
    if not quick:
        text += (
            f" (targets ≥ {TARGET_CEILING}×: {'met' if vs_ceiling >= TARGET_CEILING else 'missed'}"
            f", ≥ {TARGET_NAIVE:g}×: {'met' if vs_naive >= TARGET_NAIVE else 'missed'})"
        )
        if _noise_warning(scaling):
            text += "; **noisy run**, not reliable"
    return text


def run(quick: bool, out_dir: Path, log: Callable[[str], None] = print) -> Outcome:
    config = QUICK if quick else FULL
    levels, scaling = measure(config, log)
    title = "Throughput: murano's batching against a naive server and the ceiling"
    title += " (quick)" if quick else ""
    path = write_result(out_dir, "throughput", title, report(config, levels, scaling, quick))
    return Outcome(path, summary(levels, scaling, quick))


def main(argv: list[str] | None = None) -> int:
    return benchmark_main(run, __doc__.split("\n\n")[0], argv)


if __name__ == "__main__":
    sys.exit(main())
