"""Event-loop lag of the server under load, before and after a change, in one run.

    .venv/bin/python benchmarks/loop_lag.py [--before main] [--clients 16] [--requests 2]
                                            [--size 1024] [--variants 4] [--out DIR]

Starts murano twice as a subprocess on the embedded tiny model, once from a `git archive` of
`--before` (default `main`) and once from this checkout. Inside each server a probe sleeps
10 ms in a loop on the server's own event loop and records how late it wakes (the lag every
other request on that loop suffers). `--clients` clients each ask `--requests` times for
`--variants` PNG images of `--size`² (JSON, base64, gzip accepted). Reports p50/p99/max lag
in milliseconds and the images per second, as a table in `results/loop_lag.md`.

The probe is this file, run with `--serve`: it builds the app with `create_app` from
whichever murano is on `PYTHONPATH` and runs uvicorn on the same loop as the probe.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

PROBE_S = 0.010


def _serve(port: int, data_dir: str, out: str) -> None:
    import uvicorn

    from murano.app import create_app
    from murano.settings import Settings

    settings = Settings(port=port, data_dir=Path(data_dir), auth=False, watermark=False)
    app = create_app(settings)
    lags: list[float] = []

    async def probe() -> None:
        loop = asyncio.get_running_loop()
        while True:
            began = loop.time()
            await asyncio.sleep(PROBE_S)
            lags.append((loop.time() - began - PROBE_S) * 1000)

    async def main() -> None:
        server = uvicorn.Server(uvicorn.Config(app, port=port, log_level="warning"))
        task = asyncio.get_running_loop().create_task(probe())
        measuring = threading.Event()

        def start(*_: Any) -> None:
            lags.clear()
            measuring.set()

        signal.signal(signal.SIGUSR1, start)
        try:
            await server.serve()
        finally:
            task.cancel()
            Path(out).write_text(json.dumps(lags))

    asyncio.run(main())


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, round((len(ordered) - 1) * q / 100))]


def _measure(source: Path, args: argparse.Namespace, log: Any) -> dict[str, float]:
    import httpx

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _common import free_port

    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "lags.json"
        env = {**os.environ, "PYTHONPATH": str(source), "HF_HUB_OFFLINE": "1"}
        argv = [sys.executable, __file__, "--serve", str(port), tmp, str(out)]
        process = subprocess.Popen(argv, env=env)
        base = f"http://127.0.0.1:{port}"
        try:
            while True:
                try:
                    if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if process.poll() is not None:
                    raise RuntimeError("server exited")
                time.sleep(0.25)
            body = {"model": "murano-tiny", "prompt": "a lighthouse", "width": args.size,
                    "height": args.size, "variants": args.variants, "format": "png",
                    "safe_mode": False}  # fmt: skip
            process.send_signal(signal.SIGUSR1)
            began = time.monotonic()
            errors = 0

            def client(i: int) -> None:
                nonlocal errors
                with httpx.Client(timeout=600, headers={"accept-encoding": "gzip"}) as http:
                    for n in range(args.requests):
                        r = http.post(
                            f"{base}/api/v1/image/generate", json={**body, "seed": i * 100 + n}
                        )
                        errors += r.status_code != 200

            threads = [threading.Thread(target=client, args=(i,)) for i in range(args.clients)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            elapsed = time.monotonic() - began
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=120)
        lags = json.loads(out.read_text())
    images = args.clients * args.requests * args.variants
    log(f"{source}: {len(lags)} probes, {errors} errors, {images / elapsed:.2f} images/s")
    return {
        "p50": _percentile(lags, 50),
        "p99": _percentile(lags, 99),
        "max": max(lags or [float("nan")]),
        "images_per_s": images / elapsed,
        "errors": errors,
    }


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--serve":
        _serve(int(sys.argv[2]), sys.argv[3], sys.argv[4])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default="main")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests", type=int, default=2)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--variants", type=int, default=4)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    args = parser.parse_args()
    repo = Path(__file__).resolve().parent.parent

    def log(message: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        archive = subprocess.run(
            ["git", "-C", str(repo), "archive", args.before], capture_output=True, check=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        before = _measure(Path(tmp), args, log)
    after = _measure(repo, args, log)
    rows = [(f"before ({args.before})", before), ("after (this checkout)", after)]
    lines = [
        "# Event-loop lag under load",
        "",
        f"{args.clients} clients × {args.requests} requests of {args.variants} × {args.size}² PNG"
        " (JSON, gzip), embedded tiny model, watermark off. Lag: how late a 10 ms timer on the"
        " server's event loop wakes, in ms. Both servers measured in one run, one after the"
        " other, on the same machine.",
        "",
        "| server | lag p50 | lag p99 | lag max | images/s | errors |",
        "|---|---|---|---|---|---|",
        *(
            f"| {name} | {r['p50']:.1f} | {r['p99']:.1f} | {r['max']:.1f} |"
            f" {r['images_per_s']:.2f} | {r['errors']:.0f} |"
            for name, r in rows
        ),
        "",
    ]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "loop_lag.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
