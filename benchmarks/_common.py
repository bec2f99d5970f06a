"""What every benchmark shares: the machine description, percentiles, Markdown tables,
result files, and servers started as subprocesses on 127.0.0.1 and always stopped."""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import math
import os
import platform
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

__all__ = [
    "BENCH_DIR",
    "PYTHON",
    "REPO",
    "RESULTS_DIR",
    "Outcome",
    "ServerSpec",
    "Table",
    "child_env",
    "fmt",
    "free_port",
    "machine",
    "median",
    "murano_spec",
    "percentile",
    "running_processes",
    "running_servers",
    "write_result",
]

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
PYTHON = sys.executable

# Never reach the hub: every model is built locally.
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}
os.environ.update(OFFLINE_ENV)
# Benchmark the checkout's murano, installed or not.
if str(REPO) not in sys.path:
    sys.path.insert(1, str(REPO))


def child_env(extra: Mapping[str, str | None] | None = None) -> dict[str, str]:
    """The environment of every subprocess: offline, unbuffered, this checkout's murano;
    then `extra`, where None removes a variable."""
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, **OFFLINE_ENV, "PYTHONUNBUFFERED": "1", "PYTHONPATH": path}
    for key, value in (extra or {}).items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


# -- statistics -------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0–100), linear between closest ranks; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def median(values: Sequence[float]) -> float:
    return percentile(values, 50)


# -- reporting --------------------------------------------------------------------------


@dataclass
class Table:
    headers: list[str]
    rows: list[list[str]]

    def markdown(self) -> str:
        lines = ["| " + " | ".join(self.headers) + " |", "|" + "---|" * len(self.headers)]
        lines += ["| " + " | ".join(row) + " |" for row in self.rows]
        return "\n".join(lines)


@dataclass(frozen=True)
class Outcome:
    """A benchmark's result file and the one-line summary the index shows."""

    path: Path
    summary: str


def benchmark_main(
    run: Callable[[bool, Path], Outcome], description: str, argv: list[str] | None
) -> int:
    """The command line every benchmark script shares: `--quick`, `--out DIR`."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="tiny sizes and counts (smoke)")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="results directory")
    args = parser.parse_args(argv)
    outcome = run(args.quick, args.out)
    print(outcome.path.read_text())
    return 0


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def machine() -> dict[str, str]:
    """What the numbers were measured on."""
    import torch

    return {
        "CPU": _cpu_model(),
        "cores": str(os.cpu_count()),
        "torch threads": str(torch.get_num_threads()),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def write_result(out_dir: Path, name: str, title: str, body: str) -> Path:
    """`out_dir/<name>.md`: the title, the machine table, then `body`."""
    specs = machine()
    table = Table(["machine", ""], [[key, value] for key, value in specs.items()])
    text = f"# {title}\n\n{table.markdown()}\n\n{body.strip()}\n"
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.md"
    path.write_text(text, encoding="utf-8")
    return path


def fmt(value: float, digits: int = 3) -> str:
    return "n/a" if math.isnan(value) else f"{value:.{digits}f}"


# -- servers ----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class ServerSpec:
    """How to start one server listening on 127.0.0.1:`port`."""

    argv: list[str]
    port: int
    log_path: Path
    env: Mapping[str, str | None] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@contextlib.contextmanager
def running_servers(*specs: ServerSpec, ready_timeout_s: float = 600.0) -> Iterator[list[str]]:
    """Start every server at once (their start-ups overlap), wait until each one's
    `/readyz` answers 200, yield their base URLs, and stop them all on the way out whatever
    happened (SIGINT, then SIGKILL)."""
    with running_processes(*specs, ready_timeout_s=ready_timeout_s):
        yield [spec.base for spec in specs]


@contextlib.contextmanager
def running_processes(
    *specs: ServerSpec, ready_timeout_s: float = 600.0
) -> Iterator[list[subprocess.Popen[bytes]]]:
    """`running_servers`, yielding the servers' processes instead of their URLs."""
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for spec in specs:
            spec.log_path.parent.mkdir(parents=True, exist_ok=True)
            # The child keeps its own descriptor of the log; ours can close at once.
            with spec.log_path.open("wb") as log:
                procs.append(
                    subprocess.Popen(
                        spec.argv,
                        cwd=REPO,
                        env=child_env(spec.env),
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    )
                )
        for spec, proc in zip(specs, procs, strict=True):
            _wait_ready(proc, spec.base, ready_timeout_s, spec.log_path)
        yield procs
    finally:
        _stop_all(procs)


def _wait_ready(proc: subprocess.Popen[bytes], base: str, timeout_s: float, log: Path) -> None:
    deadline = time.monotonic() + timeout_s
    with httpx.Client(timeout=5.0) as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"server exited with {proc.returncode} before it was ready:\n"
                    + log.read_text(errors="replace")[-4000:]
                )
            with contextlib.suppress(httpx.TransportError):
                if client.get(f"{base}/readyz").status_code == 200:
                    return
            time.sleep(0.2)
    raise TimeoutError(f"server not ready after {timeout_s:.0f} s; see {log}")


def _stop_all(procs: list[subprocess.Popen[bytes]], timeout_s: float = 20.0) -> None:
    """SIGINT (a graceful shutdown) to every server still running, then SIGKILL to those
    that have not exited within `timeout_s`, and to any process one of them had started
    that outlived it (LitServe's workers)."""
    import psutil

    children: list[psutil.Process] = []
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            children += psutil.Process(proc.pid).children(recursive=True)
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
    deadline = time.monotonic() + timeout_s
    for proc in procs:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    _, alive = psutil.wait_procs(children, timeout=max(2.0, deadline - time.monotonic()))
    for child in alive:
        with contextlib.suppress(psutil.Error):
            child.kill()


def murano_spec(
    data_dir: Path, *, models_file: Path | None = None, env: dict[str, str] | None = None
) -> ServerSpec:
    """`murano serve --no-auth --data-dir data_dir [--models models_file]` on a free port."""
    port = free_port()
    argv = [PYTHON, "-m", "murano", "serve", "--no-auth", "--data-dir", str(data_dir)]
    argv += ["--port", str(port), "--log-level", "warning"]
    if models_file is not None:
        argv += ["--models", str(models_file)]
    return ServerSpec(argv, port, data_dir / "server.log", env)
