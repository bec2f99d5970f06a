"""Run every benchmark in one go, on one machine, and write `results/` with an index.

    .venv/bin/python benchmarks/run.py [--quick] [--out DIR] [--only NAME ...]

`--quick` shrinks sizes and counts so the whole run takes well under a minute (the smoke
test uses it); its numbers mean nothing. `--out` writes somewhere other than
`benchmarks/results/`. Each benchmark is also runnable alone (`benchmarks/<name>.py`).
A benchmark that fails is reported in the index and makes the exit status 1; the others
still run.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from _common import BENCH_DIR, PYTHON, REPO, RESULTS_DIR, Outcome, Table, child_env, machine

__all__ = ["BENCHMARKS", "main"]

Runner = Callable[[bool, Path], Outcome]


class Skipped(Exception):
    """A benchmark that cannot run here; the index says why, and it is no failure."""


def _overhead(quick: bool, out: Path) -> Outcome:
    import overhead

    return overhead.run(quick, out, log=_log)


def _throughput(quick: bool, out: Path) -> Outcome:
    import throughput

    return throughput.run(quick, out, log=_log)


def _encode(quick: bool, out: Path) -> Outcome:
    """`encode.py` (another module's benchmark) as a subprocess, with the flags it has."""
    script = BENCH_DIR / "encode.py"
    env = child_env()
    usage = subprocess.run(
        [PYTHON, str(script), "--help"], capture_output=True, text=True, env=env, check=False
    ).stdout
    argv = [PYTHON, str(script)]
    if quick:
        if "--quick" in usage:
            argv.append("--quick")
        elif "--repeat" in usage:
            argv += ["--repeat", "1"]
        else:
            raise Skipped("encode.py has no --quick option")
    written = RESULTS_DIR / "encode.md"
    if "--out" in usage:
        argv += ["--out", str(out)]
        written = out / "encode.md"
    elif out.resolve() != RESULTS_DIR.resolve():
        raise Skipped("encode.py has no --out option, and would overwrite results/")
    subprocess.run(argv, cwd=REPO, env=env, check=True)
    return Outcome(written, "WebP/PNG/JPEG encode settings: see the file")


def _replicas(quick: bool, out: Path) -> Outcome:
    import replicas

    return replicas.run(quick, out, log=_log)


# name → (what it measures, how to run it)
BENCHMARKS: dict[str, tuple[str, Runner]] = {
    "overhead": ("one client: murano over HTTP against the bare pipeline", _overhead),
    "throughput": (
        "1–64 clients: murano against LitServe, a naive server and the ceiling",
        _throughput,
    ),
    "encode": ("image encoding speed and size per format and setting", _encode),
    "replicas": ("16 clients: 2 CPU replicas, 1 thread each, against 1 with 2 threads", _replicas),
}


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


EARLIER = " (from an earlier run)"


def _index_rows(path: Path) -> dict[str, str]:
    """benchmark → result cell of an index written before."""
    if not path.exists():
        return {}
    rows = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split(" | ")]
        if len(cells) == 3 and cells[0] in BENCHMARKS:
            rows[cells[0]] = cells[2]
    return rows


def _cell(text: str) -> str:
    """Text that cannot break a Markdown table row."""
    return " ".join(text.split()).replace("|", "\\|")[:300]


def _index(out: Path, rows: list[list[str]], quick: bool) -> Path:
    specs = machine()
    lines = [
        "# Benchmark results" + (" (quick mode: numbers are meaningless)" if quick else ""),
        "",
        "Written by `.venv/bin/python benchmarks/run.py`"
        + (" --quick" if quick else "")
        + f" on {specs['CPU']} ({specs['cores']} cores), torch {specs['torch']}, "
        f"{specs['date']}. Every ratio compares numbers taken in the same run on the same "
        "machine; absolute times are this machine's only.",
        "",
        Table(["benchmark", "measures", "result"], rows).markdown(),
        "",
    ]
    path = out / "README.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes and counts (smoke)")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="results directory")
    parser.add_argument("--only", nargs="+", choices=list(BENCHMARKS), help="run only these")
    args = parser.parse_args(argv)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    rows, failed = [], False
    chosen = args.only or list(BENCHMARKS)
    previous = _index_rows(out / "README.md")
    for name, (description, runner) in BENCHMARKS.items():
        if name not in chosen:
            # Keep the index whole: what an earlier run wrote about results left in `out`.
            if (out / f"{name}.md").exists():
                earlier = previous.get(name, f"[{name}.md]({name}.md)")
                rows.append([name, description, earlier.removesuffix(EARLIER) + EARLIER])
            continue
        if name == "encode" and not (BENCH_DIR / "encode.py").exists():
            rows.append([name, description, "not run: benchmarks/encode.py is missing"])
            continue
        _log(f"{name}: starting")
        began = time.monotonic()
        try:
            outcome = runner(args.quick, out)
        except Skipped as exc:
            rows.append([name, description, f"not run: {_cell(str(exc))}"])
            continue
        except Exception as exc:
            failed = True
            traceback.print_exc()
            rows.append([name, description, f"**failed**: {_cell(f'{type(exc).__name__}: {exc}')}"])
            continue
        took = time.monotonic() - began
        _log(f"{name}: done in {took:.0f} s → {outcome.path}")
        link = outcome.path.relative_to(out) if outcome.path.is_relative_to(out) else outcome.path
        rows.append([name, description, f"[{link}]({link}): {outcome.summary}"])
    print(_index(out, rows, args.quick).read_text())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
