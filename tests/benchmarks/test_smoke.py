"""Smoke test of the benchmarks: `benchmarks/run.py --quick` starts the real servers, runs
every benchmark end to end and writes each result file with the rows the README promises.
Numbers from quick mode mean nothing, so none is checked."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

REPO = Path(__file__).resolve().parents[2]


def first_cells(markdown: str, header: str) -> list[str]:
    """The first column of the Markdown table whose first header cell is `header`."""
    lines = markdown.splitlines()
    for i, line in enumerate(lines):
        if line.startswith(f"| {header} |"):
            rows = []
            for row in lines[i + 2 :]:
                if not row.startswith("|"):
                    break
                rows.append(row.split("|")[1].strip())
            return rows
    raise AssertionError(f"no table headed {header!r} in:\n{markdown}")


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bench")
    done = subprocess.run(
        # The replicas benchmark has a smoke test of its own (below).
        [
            sys.executable,
            str(REPO / "benchmarks" / "run.py"),
            "--quick",
            "--out",
            str(out),
            "--only",
            "overhead",
            "throughput",
            "encode",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    return out


def test_index_links_every_result(results: Path) -> None:
    index = (results / "README.md").read_text()
    assert first_cells(index, "benchmark")[:2] == ["overhead", "throughput"]
    assert "[overhead.md](overhead.md)" in index
    assert "[throughput.md](throughput.md)" in index
    assert "failed" not in index


@pytest.mark.parametrize("name", ["overhead", "throughput"])
def test_results_describe_the_machine(results: Path, name: str) -> None:
    text = (results / f"{name}.md").read_text()
    assert first_cells(text, "machine") == [
        "CPU",
        "cores",
        "torch threads",
        "torch",
        "python",
        "date",
    ]


def test_overhead_compares_murano_with_the_direct_pipeline(results: Path) -> None:
    text = (results / "overhead.md").read_text()
    tables = text.split("\n## ")[1:]
    models = [t.split(":")[0] for t in tables if t.startswith(("murano-tiny", "sd-turbo"))]
    assert models == ["murano-tiny", "sd-turbo-shaped (mini)"]
    for table in tables[:2]:
        assert first_cells(table, "way") == [
            "direct pipeline call (PIL)",
            "direct pipeline call + WebP encode",
            "murano over HTTP",
            "murano over HTTP, watermark on",
            "murano over HTTP, uncompressed response",
            "server: inference",
            "server: total",
        ]
    assert text.count("murano / direct = **") == 2


def test_throughput_has_every_load_and_the_batch_scaling(results: Path) -> None:
    text = (results / "throughput.md").read_text()
    assert first_cells(text, "clients") == ["1", "4", "16", "64"]
    assert first_cells(text, "batch") == ["1", "4", "16"]
    assert "murano / ceiling" in text and "murano / naive" in text
    assert "| queued ms | running ms | postprocessing ms | sending ms |" in text


def test_throughput_compares_murano_with_litserve(results: Path) -> None:
    text = (results / "throughput.md").read_text()
    header = next(line for line in text.splitlines() if line.startswith("| clients | murano |"))
    row = next(line for line in text.splitlines() if line.startswith("| 16 |"))
    cells = dict(zip(header.split("|"), row.split("|"), strict=True))
    if importlib.util.find_spec("litserve") is None:
        # Without the optional peer the column stays, empty, and the file says why.
        assert cells[" LitServe "].strip() == "n/a"
        assert "`litserve` is not installed" in text
    else:
        assert cells[" LitServe "].strip() != "n/a"
        assert cells[" murano / LitServe "].strip().endswith("×")


def test_replicas_smoke(tmp_path: Path) -> None:
    """`benchmarks/replicas.py --smoke`: both servers, side by side, and a ratio."""
    done = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks" / "replicas.py"),
            "--smoke",
            "--out",
            str(tmp_path),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    text = (tmp_path / "replicas.md").read_text()
    assert first_cells(text, "setup") == ["2 replicas", "1 replica"]
    # Which replicas a smoke run's few requests reach depends on timing (the first, resident
    # replica may take them all in one batch); tests/engine/test_replicas_server.py proves
    # both serve under load. Here: the table and its verdict are written.
    assert set(first_cells(text, "replica")) <= {"cpu#0", "cpu#1"}
    assert "cpu#0" in first_cells(text, "replica")
    assert "**2 replicas / 1 replica: " in text
    assert "every replica served batches" in text or "replica(s) served none**" in text
