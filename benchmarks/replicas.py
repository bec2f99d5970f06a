"""Replicas: N copies of the embedded model, one per device, against one copy, at 16
clients, in images/s side by side and as a ratio.

    .venv/bin/python benchmarks/replicas.py [--smoke] [--out DIR] [--devices cpu,cpu]

On the CPU (the default, `--devices cpu,cpu`): 2 replicas with one torch thread each
(`MURANO_DEVICES=cpu,cpu`, `MURANO_DEFAULT_REPLICAS=all`, `MURANO_TORCH_THREADS=1`) against 1
replica with two torch threads (`MURANO_DEVICES=cpu`, `MURANO_TORCH_THREADS=2`): the same
cores, spent on two pipelines at once or on one pipeline's ops. On a GPU machine
(`--devices cuda:0,cuda:1,...`): one replica per GPU against one replica on the first; the
torch thread count is left alone. Both servers run at once (their start-ups overlap) and are
measured in alternating rounds; the result is the median round. `--smoke` (or `--quick`)
runs short rounds at 4 clients; its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
from _common import (
    RESULTS_DIR,
    Outcome,
    Table,
    fmt,
    median,
    murano_spec,
    running_servers,
    write_result,
)

__all__ = ["main", "run"]

MODEL_ID = "murano-tiny"
PROMPT = "a lighthouse on a cliff at dusk"


@dataclass(frozen=True)
class Config:
    devices: list[str]
    clients: int = 16
    size: int = 256
    round_s: float = 20.0
    rounds: int = 3

    @property
    def on_cpu(self) -> bool:
        return all(device == "cpu" for device in self.devices)


@dataclass(frozen=True)
class Setup:
    name: str
    env: dict[str, str]
    replicas: int
    threads: str


def setups(config: Config) -> list[Setup]:
    """The two servers: every device, then the first device alone."""
    n = len(config.devices)
    many = {"MURANO_DEVICES": ",".join(config.devices), "MURANO_DEFAULT_REPLICAS": "all"}
    one = {"MURANO_DEVICES": config.devices[0]}
    if not config.on_cpu:
        return [
            Setup(f"{n} replicas", many, n, "torch default"),
            Setup("1 replica", one, 1, "torch default"),
        ]
    return [
        Setup(f"{n} replicas", {**many, "MURANO_TORCH_THREADS": "1"}, n, "1 (process-wide)"),
        Setup("1 replica", {**one, "MURANO_TORCH_THREADS": str(n)}, 1, str(n)),
    ]


async def drive(base: str, clients: int, duration_s: float, body: dict[str, object]) -> float:
    """Images/s of `clients` clients sending back to back for `duration_s`."""
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    done = 0
    async with httpx.AsyncClient(limits=limits, timeout=900) as client:
        start = time.perf_counter()
        deadline = start + duration_s

        async def one_client(number: int) -> None:
            nonlocal done
            index = 0
            while index == 0 or time.perf_counter() < deadline:
                seed = 1 + number * 100_000 + index
                response = await client.post(
                    f"{base}/api/v1/image/generate", json={**body, "seed": seed}
                )
                response.raise_for_status()
                done += 1
                index += 1

        await asyncio.gather(*(one_client(n) for n in range(clients)))
        return done / (time.perf_counter() - start)


def batches_by_replica(base: str) -> dict[str, int]:
    """Pipeline calls per replica, from `/metrics`."""
    text = httpx.get(f"{base}/metrics", timeout=30).text
    pattern = rf'^murano_batch_images_count\{{model="{MODEL_ID}",replica="([^"]+)"\}} (\S+)$'
    return {m.group(1): int(float(m.group(2))) for m in re.finditer(pattern, text, re.M)}


def measure(
    config: Config, log: Callable[[str], None]
) -> tuple[list[Setup], dict[str, float], dict[str, int]]:
    from murano.engine.tiny import DEFAULT_MODEL_CFG, DEFAULT_MODEL_STEPS

    body: dict[str, object] = {
        "model": MODEL_ID,
        "prompt": PROMPT,
        "width": config.size,
        "height": config.size,
        "steps": DEFAULT_MODEL_STEPS,
        "cfg_scale": DEFAULT_MODEL_CFG,
        "format": "webp",
        "safe_mode": False,
        "hide_watermark": True,
    }
    chosen = setups(config)
    with tempfile.TemporaryDirectory(prefix="murano-replicas-") as tmp:
        specs = [
            murano_spec(Path(tmp) / f"server{i}", env=setup.env) for i, setup in enumerate(chosen)
        ]
        with running_servers(*specs) as bases:
            for base in bases:  # warm-up: a first batch on every replica
                asyncio.run(drive(base, config.clients, 0.0, body))
            rounds: dict[str, list[float]] = {setup.name: [] for setup in chosen}
            for number in range(config.rounds):
                for setup, base in zip(chosen, bases, strict=True):
                    rate = asyncio.run(drive(base, config.clients, config.round_s, body))
                    rounds[setup.name].append(rate)
                    log(f"round {number + 1}: {setup.name}: {rate:.2f} images/s")
            calls = batches_by_replica(bases[0])
    return chosen, {name: median(rates) for name, rates in rounds.items()}, calls


def report(
    config: Config, chosen: list[Setup], rates: dict[str, float], calls: dict[str, int]
) -> tuple[str, str]:
    many, one = chosen
    ratio = rates[many.name] / rates[one.name]
    rows = [
        [s.name, ",".join(config.devices[: s.replicas]), s.threads, fmt(rates[s.name], 2)]
        for s in chosen
    ]
    table = Table(["setup", "devices", "torch threads", "images/s"], rows)
    per_replica = Table(
        ["replica", "pipeline calls"], [[name, str(n)] for name, n in sorted(calls.items())]
    )
    idle = many.replicas - sum(1 for n in calls.values() if n > 0)
    served = "every replica served batches" if idle == 0 else f"**{idle} replica(s) served none**"
    summary = f"{config.clients} clients: {many.name} / 1 replica {ratio:.2f}×"
    body = f"""
{config.clients} clients send back to back to the embedded model
({config.size}×{config.size}, its default steps, WebP), {config.rounds} alternating rounds of
{config.round_s:.0f} s per setup; the median round. Generated by `benchmarks/replicas.py`.

{table.markdown()}

**{many.name} / 1 replica: {ratio:.2f}×** (images/s, same run, same machine).

Pipeline calls per replica of the {many.name} server (from `/metrics`, warm-up included):
{served}.

{per_replica.markdown()}

Torch threads: `torch.set_num_threads` is process-wide in effect, not per device thread, so a
replica cannot be given its own thread count. `MURANO_TORCH_THREADS` sets it once for the
process (and again on each device thread as it starts); on the CPU the {many.name} server
runs with 1 thread (one core per replica), the 1-replica server with {len(config.devices)}.
"""
    return summary, body


def run(
    quick: bool,
    out: Path,
    log: Callable[[str], None] = print,
    devices: list[str] | None = None,
) -> Outcome:
    config = Config(devices or ["cpu", "cpu"])
    if quick:
        config = Config(config.devices, clients=4, size=64, round_s=1.0, rounds=1)
    chosen, rates, calls = measure(config, log)
    summary, body = report(config, chosen, rates, calls)
    if quick:
        summary += " (smoke: meaningless)"
    path = write_result(out, "replicas", "Replicas: many devices against one", body)
    return Outcome(path, summary)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", "--quick", action="store_true", dest="smoke",
                        help="short rounds at 4 clients (numbers mean nothing)")  # fmt: skip
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="results directory")
    parser.add_argument(
        "--devices", default="cpu,cpu", help="the replicas' devices (cpu,cpu or cuda:0,cuda:1)"
    )
    args = parser.parse_args(argv)
    devices = [d.strip() for d in args.devices.split(",") if d.strip()]
    if len(devices) < 2:
        parser.error("--devices needs at least two devices")
    outcome = run(args.smoke, args.out, devices=devices)
    print(outcome.path.read_text())
    print(outcome.summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
