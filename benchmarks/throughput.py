"""Throughput under concurrency: murano's batching scheduler against LitServe, a naive
server and the bare pipeline's ceiling, on the embedded default model ("murano-tiny").

At each load (1, 4, 16, 64 clients) the ways of making images take turns, in rounds
(ceiling, murano, LitServe, naive, naive thread-pool; again), so that a burst of load from
elsewhere on the machine hits one round rather than one way; each way's rate is the median
over its rounds:

* murano: a real `murano serve` subprocess with its defaults (the invisible watermark on)
  but `MURANO_MAX_BATCH_IMAGES`=16, the peer's batch limit, driven by `clients` asyncio
  tasks that each send requests back to back (httpx, JSON with a base64 JPEG, decoded) for
  the round's time; the requests then in flight finish and count.
* murano unmarked (for information, not in quick mode): the same server, each request
  with `hide_watermark: true`, so that it does the peer's work.
* LitServe: `litserve_server.py`, the same pipeline behind LitServe's batching (max batch
  16, 10 ms window), the same JPEG encode, no watermark; driven the same way. Skipped, and
  said so in the results, where `litserve` is not installed (`pip install
  'murano-server[bench]'`).
* naive: `naive_server.py` (FastAPI + diffusers, one global lock, one pipeline call per
  request, the same JPEG encode, no watermark), driven the same way; once calling the
  pipeline on one dedicated thread (the baseline of the targets), once from FastAPI's
  thread pool.
* ceiling: this process calling the same pipeline in a loop with the batch size murano
  could at best form (the client count, capped at its batch limit), no encode, no HTTP.

While one way is measured the servers not being measured are stopped (SIGSTOP), so that
none takes CPU from it while idle (LitServe's inference worker polls its queue).

images/s = images answered / (last answer − start). Latency percentiles pool the rounds
and leave out each client's first request of a round (they all start at once, a transient)
when enough remain. The pipeline's own batch scaling is measured first: on a small CPU it
bounds what any batching can gain.

    .venv/bin/python benchmarks/throughput.py [--quick] [--out DIR]
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import importlib.util
import math
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
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
    running_processes,
    write_result,
)
from _models import build_tiny, load_pipeline

__all__ = ["main", "run"]

PROMPT = "a lighthouse on a cliff at dusk, oil painting"
MODEL_ID = "murano-tiny"
TARGET_CEILING = 0.9
TARGET_NAIVE = 2.0
TARGET_CLIENTS = 16
# The peer's batching, as the issue measured it.
LITSERVE_BATCH_TIMEOUT_MS = 10.0


# The ways measured at each load, in the order they take turns within a round.
SERVERS = ("murano", "murano-unmarked", "litserve", "naive", "naive-pool")
# Measured for information only, and not in quick mode.
INFORMATIONAL = ("murano-unmarked", "naive-pool")
# Ways that are another way's server asked for something else: murano without its
# invisible watermark (`hide_watermark`), doing the peer's work.
SERVER_OF = {"murano-unmarked": "murano"}
BODY_OF: dict[str, dict[str, Any]] = {"murano-unmarked": {"hide_watermark": True}}
# murano's job states whose time the results break down (murano_job_seconds).
JOB_STATES = ("queued", "running", "postprocessing", "sending")


def litserve_available() -> bool:
    return importlib.util.find_spec("litserve") is not None


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
    # Also measure the INFORMATIONAL ways.
    informational: bool = True

    @property
    def servers(self) -> tuple[str, ...]:
        skip = set() if self.informational else set(INFORMATIONAL)
        if not litserve_available():
            skip.add("litserve")
        return tuple(way for way in SERVERS if way not in skip)

    @property
    def processes(self) -> tuple[str, ...]:
        """The server processes the ways need, in `servers`' order."""
        return tuple(way for way in self.servers if way not in SERVER_OF)


# 256² keeps a full run to a few minutes on a 2-core CPU and is the size where batching
# still pays there (see the 512² scaling table in the results).
FULL = Config(
    size=256,
    clients=(1, 4, 16, 64),
    rounds=5,
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
    informational=False,
)


@dataclass
class Load:
    images_per_s: float
    latencies: list[float]
    requests: int
    # murano only, from /metrics: mean images and seconds per pipeline call, and a job's
    # mean seconds in each state.
    mean_batch: float = math.nan
    call_s: float = math.nan
    states: dict[str, float] = field(default_factory=dict)
    # images/s of each round, in order (a combined load's rounds).
    per_round: list[float] = field(default_factory=list)

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
        "format": "jpeg",
        # The naive and LitServe servers ignore these: they check and mark nothing.
        "safe_mode": False,
    }


_COUNTERS = ("batch_images_sum", "batch_images_count", "inference_seconds_sum")


def _counters(base: str) -> dict[str, float]:
    """murano's images-per-call histogram, pipeline seconds and per-state job seconds
    (`job_seconds_sum/<state>`, `job_seconds_count/<state>`), from /metrics."""
    text = httpx.get(f"{base}/metrics", timeout=30).text
    found = {}
    for name in _COUNTERS:
        match = re.search(rf"^murano_{name}\{{[^}}]*\}} (\S+)$", text, re.M)
        found[name] = float(match.group(1)) if match else 0.0
    for state in JOB_STATES:
        for kind in ("sum", "count"):
            pattern = rf'^murano_job_seconds_{kind}\{{[^}}]*state="{state}"[^}}]*\}} (\S+)$'
            match = re.search(pattern, text, re.M)
            found[f"job_seconds_{kind}/{state}"] = float(match.group(1)) if match else 0.0
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
        per_round=[r.images_per_s for r in rounds],
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
    """murano, LitServe and the naive servers (see `litserve_server.py`,
    `naive_server.py`) on the same model directory, in `config.processes`' order. All run
    at once; `Turns` stops each while another is measured."""
    data_dir = work / "murano"
    model_dir = build_tiny(data_dir)
    env = {
        "MURANO_MAX_BATCH_IMAGES": str(config.max_batch),
        "MURANO_MAX_QUEUE": str(4 * max(config.clients)),
    }
    specs = [murano_spec(data_dir, env=env)]
    model = ["--model-dir", str(model_dir)]
    if "litserve" in config.processes:
        port = free_port()
        argv = [PYTHON, str(Path(__file__).with_name("litserve_server.py")), *model]
        argv += ["--port", str(port), "--max-batch", str(config.max_batch)]
        argv += ["--batch-timeout-ms", f"{LITSERVE_BATCH_TIMEOUT_MS:g}"]
        specs.append(ServerSpec(argv, port, work / "litserve.log"))
    handlers = {"naive": "device-thread", "naive-pool": "thread-pool"}
    for way in (w for w in config.processes if w in handlers):
        port = free_port()
        argv = [PYTHON, str(Path(__file__).with_name("naive_server.py")), *model]
        argv += ["--port", str(port), "--handler", handlers[way]]
        specs.append(ServerSpec(argv, port, work / f"naive-{handlers[way]}.log"))
    return specs, model_dir


@dataclass
class Level:
    clients: int
    # By way: "ceiling" and each server measured.
    loads: dict[str, Load]
    batch: int
    # The machine's 1-minute load average when the level started and ended (other work
    # on a shared machine shows here).
    load_average: tuple[float, float] = (math.nan, math.nan)

    def load(self, way: str) -> Load:
        return self.loads.get(way) or Load(math.nan, [], 0)

    def ratio(self, way: str, other: str) -> float:
        return self.load(way).images_per_s / self.load(other).images_per_s

    def rounds_at(self, way: str, other: str, at_least: float) -> tuple[int, int]:
        """In how many of the rounds `way` made at least `at_least`× the images/s `other`
        made in the same round, and how many rounds both ran."""
        pairs = list(zip(self.load(way).per_round, self.load(other).per_round, strict=False))
        return sum(a >= at_least * b for a, b in pairs), len(pairs)


# size → batch → the scaling pass's result
Scaling = dict[int, dict[int, Load]]


class Turns:
    """Only the way being measured runs: every other server's processes (children
    included) are stopped (SIGSTOP) meanwhile, so that a server that polls while idle
    (LitServe's inference worker takes ~10% of a core doing nothing) takes nothing from
    the way measured. Every server runs again on the way out, to be stopped normally."""

    def __init__(self, procs: dict[str, subprocess.Popen[bytes]]) -> None:
        import psutil

        self._trees = {}
        for way, proc in procs.items():
            root = psutil.Process(proc.pid)
            self._trees[way] = [root, *root.children(recursive=True)]

    def only(self, way: str | None) -> None:
        """Let `way` run (None: no server) and stop the others."""
        for name, tree in self._trees.items():
            for process in tree:
                with contextlib.suppress(Exception):  # gone already: nothing to stop
                    if name == way:
                        process.resume()
                    else:
                        process.suspend()

    @contextlib.contextmanager
    def taking_turns(self) -> Iterator[Turns]:
        try:
            yield self
        finally:
            for tree in self._trees.values():
                for process in tree:
                    with contextlib.suppress(Exception):
                        process.resume()


def measure_level(
    clients: int,
    bases: dict[str, str],
    turns: Turns,
    offline: Offline,
    config: Config,
    body: dict[str, Any],
) -> Level:
    batch = min(clients, config.max_batch)
    rounds: dict[str, list[Load]] = {way: [] for way in ("ceiling", *config.servers)}
    load_before = os.getloadavg()[0]
    # murano's /metrics over its own rounds (not the unmarked ones).
    delta: dict[str, float] = {}
    for _ in range(config.rounds):
        turns.only(None)
        rounds["ceiling"].append(offline.loop(batch, config.size, config.round_s))
        for way in config.servers:
            server = SERVER_OF.get(way, way)
            turns.only(server)
            before = _counters(bases[server]) if way == "murano" else {}
            asked = {**body, **BODY_OF.get(way, {})}
            rounds[way].append(asyncio.run(_drive(bases[server], clients, config.round_s, asked)))
            if way == "murano":
                after = _counters(bases[server])
                for name in after:
                    delta[name] = delta.get(name, 0.0) + after[name] - before[name]
    load_average = (load_before, os.getloadavg()[0])
    level = Level(
        clients, {way: _combine(loads) for way, loads in rounds.items()}, batch, load_average
    )
    murano = level.loads["murano"]
    calls = delta["batch_images_count"]
    if calls:
        murano.mean_batch = delta["batch_images_sum"] / calls
        murano.call_s = delta["inference_seconds_sum"] / calls
    for state in JOB_STATES:
        jobs = delta[f"job_seconds_count/{state}"]
        if jobs:
            murano.states[state] = delta[f"job_seconds_sum/{state}"] / jobs
    return level


def measure(config: Config, log: Callable[[str], None]) -> tuple[list[Level], Scaling]:
    from murano.engine.tiny import DEFAULT_MODEL_CFG, DEFAULT_MODEL_STEPS

    body = _body(config, DEFAULT_MODEL_STEPS, DEFAULT_MODEL_CFG)
    levels: list[Level] = []
    scaling: Scaling = {config.size: {}}
    scaling.update({size: {} for size in config.other_sizes})
    with tempfile.TemporaryDirectory(prefix="murano-bench-") as tmp:
        specs, model_dir = _servers(Path(tmp), config)
        with (
            running_processes(*specs) as procs,
            Turns(dict(zip(config.processes, procs, strict=True))).taking_turns() as turns,
        ):
            bases = {way: spec.base for way, spec in zip(config.processes, specs, strict=True)}
            offline = Offline(load_pipeline(model_dir), DEFAULT_MODEL_STEPS, DEFAULT_MODEL_CFG)
            turns.only(None)
            for size, by_batch in scaling.items():
                batches = config.batches if size == config.size else (1, 4, 16)
                for batch in batches:
                    by_batch[batch] = offline.scaling(batch, size, config.scaling_s)
                    rate = by_batch[batch].images_per_s
                    log(f"offline {size}² batch {batch}: {rate:.2f} images/s")
            for way, base in bases.items():
                turns.only(way)
                warm_up(base, config, body)
            for clients in config.clients:
                level = measure_level(clients, bases, turns, offline, config, body)
                levels.append(level)
                rates = ", ".join(f"{w} {ld.images_per_s:.2f}" for w, ld in level.loads.items())
                log(f"{clients} clients, images/s: {rates}")
    return levels, scaling


# -- report -----------------------------------------------------------------------------


def _times(ratio: float) -> str:
    return "n/a" if math.isnan(ratio) else f"{ratio:.2f}×"


NAMES = {
    "murano": "murano",
    "murano-unmarked": "murano unmarked",
    "litserve": "LitServe",
    "naive": "naive",
    "naive-pool": "naive thread-pool",
}


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
                *(_times(lv.ratio("murano", way)) for way in SERVERS[1:]),
                "–".join(fmt(x, 1) for x in lv.load_average),
            ]
        )
    headers = ["clients", *(NAMES[way] for way in SERVERS), "ceiling", "murano / ceiling"]
    headers += [f"murano / {NAMES[way]}" for way in SERVERS[1:]]
    headers += ["load average"]
    return Table(headers, rows)


def _latency_table(levels: list[Level]) -> Table:
    rows = []
    for lv in levels:
        row = [str(lv.clients)]
        for way in SERVERS:
            row += [fmt(lv.load(way).p50), fmt(lv.load(way).p99)]
        rows.append(row)
    headers = ["clients"]
    for way in SERVERS:
        headers += [f"{NAMES[way]} p50", f"{NAMES[way]} p99"]
    return Table(headers, rows)


def _jobs_table(levels: list[Level]) -> Table:
    rows = []
    for lv in levels:
        m = lv.loads["murano"]
        states = [fmt(m.states.get(state, math.nan) * 1000, 1) for state in JOB_STATES]
        rows.append([str(lv.clients), fmt(m.mean_batch, 1), fmt(m.call_s), *states])
    headers = ["clients", "images per call", "s per call"]
    headers += [f"{state} ms" for state in JOB_STATES]
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


def _setup(config: Config) -> str:
    from murano.engine.tiny import DEFAULT_MODEL_CFG, DEFAULT_MODEL_STEPS

    litserve = (
        f'"LitServe" is the same pipeline behind LitServe (max batch {config.max_batch}, '
        f"{LITSERVE_BATCH_TIMEOUT_MS:g} ms batch window, see `litserve_server.py`)"
        if "litserve" in config.servers
        else "LitServe was not measured: `litserve` is not installed here (`pip install "
        "'murano-server[bench]'`)"
    )
    policy = os.environ.get("OMP_WAIT_POLICY")
    policy = f"= {policy}" if policy else "unset (OpenMP's default)"
    return (
        f"Model: murano-tiny (the embedded default model) at {config.size}×{config.size}, "
        f"{DEFAULT_MODEL_STEPS} steps, cfg {DEFAULT_MODEL_CFG:g} (its defaults). At each load "
        f"the ways take turns for {config.rounds} round(s) of {config.round_s:g} s (the "
        "requests in flight at the end of a round finish and count; the servers not being "
        "measured are stopped meanwhile); images/s is the median over the rounds, latencies "
        "pool them. Every request asks for a JPEG in JSON (base64) with `safe_mode: false`. "
        "murano runs with its defaults, so its images carry the invisible watermark, except "
        f"`MURANO_MAX_BATCH_IMAGES={config.max_batch}` (the peer's batch limit); no other "
        'server marks anything. "murano unmarked" is the same murano server asked for '
        "`hide_watermark: true`, so that it does the peer's work. "
        f'{litserve}. "naive" calls the pipeline on one dedicated '
        'thread, one request at a time (the baseline of the targets); "naive thread-pool" '
        "is the same server with a plain `def` handler, so torch is called from FastAPI's "
        "many pool threads (see `naive_server.py`). The ceiling is this process calling the "
        f"pipeline back to back with batch = clients (at most {config.max_batch}), no "
        "encode, no HTTP. The load generator runs on the same CPU as the servers. Every "
        f"process ran with `OMP_WAIT_POLICY` {policy}."
    )


def report(config: Config, levels: list[Level], scaling: Scaling, quick: bool) -> str:
    parts = [
        _setup(config),
        "",
        "## Images per second",
        "",
        _rate_table(levels).markdown(),
        "",
        "## Latency per request (s)",
        "",
        "The ceiling's latencies, per pipeline call, are in the scaling tables.",
        "",
        _latency_table(levels).markdown(),
        "",
        "## Where murano's time goes",
        "",
        "From murano's /metrics during each load: the mean images and seconds per pipeline "
        "call, and a job's mean time in each state (`murano_job_seconds`): queued (until its "
        "batch starts on the device), running (the pipeline call), postprocessing "
        "(watermark, JPEG, base64, on the post-processing pool) and sending (until the "
        "response's last byte was handed to the server).",
        "",
        _jobs_table(levels).markdown(),
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


def _met(ok: bool) -> str:
    return "met" if ok else "missed"


def _verdict(config: Config, levels: list[Level], scaling: Scaling, quick: bool) -> str:
    if quick:
        return "Quick mode: sizes and durations too small to judge; run without `--quick`."
    at = next((lv for lv in levels if lv.clients == TARGET_CLIENTS), None)
    if at is None:
        return f"No run at {TARGET_CLIENTS} clients."
    vs_ceiling, vs_naive = at.ratio("murano", "ceiling"), at.ratio("murano", "naive")
    vs_peer = at.ratio("murano", "litserve")
    m, ceiling = at.loads["murano"], at.loads["ceiling"]
    by_batch = scaling[config.size]
    single = by_batch[min(by_batch)].images_per_s
    best = max(by_batch, key=lambda b: by_batch[b].images_per_s)
    best_gain = by_batch[best].images_per_s / single
    lines = [
        *_noise_warning(scaling),
        f"- At {TARGET_CLIENTS} clients murano reaches {vs_ceiling:.2f}× the offline ceiling "
        f"(target ≥ {TARGET_CEILING}×): **{_met(vs_ceiling >= TARGET_CEILING)}**.",
        f"- At {TARGET_CLIENTS} clients murano serves "
        + (
            f"{vs_peer:.2f}× LitServe's images/s (target > 1×, ahead of the peer): "
            f"**{_met(vs_peer > 1)}**, with its invisible watermark on and LitServe marking "
            "nothing."
            if not math.isnan(vs_peer)
            else "LitServe: not measured (not installed)."
        ),
        f"- At {TARGET_CLIENTS} clients murano serves {vs_naive:.2f}× the naive server "
        f"(target ≥ {TARGET_NAIVE:g}×): **{_met(vs_naive >= TARGET_NAIVE)}**.",
        f"- Offline at {config.size}² (scaling table), batch {at.batch} makes "
        f"{by_batch[at.batch].images_per_s / single:.2f}× the images/s of batch 1"
        + (f", and the best batch ({best}) {best_gain:.2f}×" if best != at.batch else "")
        + ". A batching server can beat a one-at-a-time one by about that much, plus "
        "whatever the naive server loses to its own per-request work.",
    ]
    if best_gain < TARGET_NAIVE and vs_naive < TARGET_NAIVE:
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
    ahead, rounds = at.rounds_at("murano", "litserve", 1.0)
    near, _ = at.rounds_at("murano", "ceiling", TARGET_CEILING)
    if rounds > 1:
        lines.append(
            f"- Round by round (each round measures every way once, seconds apart): murano "
            f"reached ≥ {TARGET_CEILING}× that round's ceiling in {near} of {rounds} rounds, "
            f"and made more images/s than LitServe in {ahead} of {rounds}. Runs on this "
            "machine vary by more than the margins: a verdict met in most rounds holds; "
            "one met by the medians alone may not."
        )
    unmarked = at.ratio("murano-unmarked", "litserve")
    if not math.isnan(unmarked):
        lines.append(
            f"- Without its watermark (`hide_watermark: true`, the peer's work) murano serves "
            f"{unmarked:.2f}× LitServe's images/s and "
            f"{at.ratio('murano-unmarked', 'ceiling'):.2f}× the ceiling at {TARGET_CLIENTS} "
            "clients."
        )
    if m.mean_batch < 0.75 * at.batch:
        lines.append(
            f"- murano formed batches of {m.mean_batch:.1f} images on average at "
            f"{TARGET_CLIENTS} clients, not {at.batch}."
        )
    if not math.isnan(m.call_s):
        inside = m.mean_batch / m.call_s
        busy = m.images_per_s / inside
        lines.append(
            f"- Inside murano the pipeline itself made {inside:.1f} images/s "
            f"({m.mean_batch:.1f} images per {m.call_s:.3f} s call) against the ceiling's "
            f"{ceiling.images_per_s:.1f}, and was busy {busy:.0%} of the time. Besides the "
            "pipeline murano does work the ceiling leaves out, on the same two cores: the "
            "watermark and JPEG encode, HTTP, JSON and base64 (and the load generator does "
            "its side of HTTP)."
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
    vs_peer = at.ratio("murano", "litserve")
    text = (
        f"{TARGET_CLIENTS} clients: murano / ceiling {vs_ceiling:.2f}×, "
        f"murano / LitServe {_times(vs_peer)}, murano / naive {vs_naive:.2f}×"
    )
    if not quick:
        text += (
            f" (targets ≥ {TARGET_CEILING}×: {_met(vs_ceiling >= TARGET_CEILING)}, > 1×: "
            f"{_met(vs_peer > 1)}, ≥ {TARGET_NAIVE:g}×: {_met(vs_naive >= TARGET_NAIVE)})"
        )
        if _noise_warning(scaling):
            text += "; **noisy run**, not reliable"
    return text


def run(quick: bool, out_dir: Path, log: Callable[[str], None] = print) -> Outcome:
    config = QUICK if quick else FULL
    levels, scaling = measure(config, log)
    title = "Throughput: murano's batching against LitServe, a naive server and the ceiling"
    title += " (quick)" if quick else ""
    path = write_result(out_dir, "throughput", title, report(config, levels, scaling, quick))
    return Outcome(path, summary(levels, scaling, quick))


def main(argv: list[str] | None = None) -> int:
    return benchmark_main(run, __doc__.split("\n\n")[0], argv)


if __name__ == "__main__":
    sys.exit(main())
