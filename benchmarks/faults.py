"""Money and answers under faults: a real murano server process (fake engine, real
PostgreSQL and Redis) with its PostgreSQL and Redis cut through TCP relays under
concurrent load, and killed with SIGKILL with requests in flight.

Writes `results/faults.md`: the faults injected, the requests and their statuses, and the
money of every key against the images its clients received (the difference must be 0).
Needs the PostgreSQL and Redis the tests use (MURANO_TEST_POSTGRES_URL,
MURANO_TEST_REDIS_URL).

    python benchmarks/faults.py [--quick]
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from decimal import Decimal
from pathlib import Path

from _common import Outcome, Table, benchmark_main, write_result

# `_common` put this checkout on the path.
from tests.faults.harness import DROPPED, PRICE
from tests.faults.scenarios import Report, kill_under_load, outage_under_load

STATUS_NAMES = {200: "200", 503: "503", 500: "500", DROPPED: "no answer"}


def _statuses(report: Report) -> str:
    parts = [
        f"{STATUS_NAMES.get(code, str(code))}: {count}"
        for code, count in report.statuses.most_common()
    ]
    return ", ".join(parts)


def _usd(value: Decimal) -> str:
    return f"{value.normalize():f}" if value else "0"


async def _runs(quick: bool, work: Path) -> list[Report]:
    clients = 8 if quick else 16
    schedule = (
        (("database", 0.0, 3.0), ("redis", 4.0, 2.0))
        if quick
        else (
            ("database", 0.0, 10.0),
            ("redis", 13.0, 6.0),
            ("database", 22.0, 4.0),
            ("redis", 22.0, 4.0),
        )
    )
    outage = await outage_under_load(work / "outage", clients=clients, schedule=schedule)
    kill = await kill_under_load(
        work / "kill", clients=clients, kill_after_images=8 if quick else 40
    )
    return [outage, kill]


def report_markdown(reports: list[Report], quick: bool) -> str:
    table = Table(
        [
            "run",
            "faults injected",
            "requests",
            "statuses",
            "images delivered",
            "images charged",
            "money difference (USD)",
            "held after",
            "`murano usage` agrees",
        ],
        [
            [
                r.name,
                "; ".join(r.faults),
                str(r.requests),
                _statuses(r),
                str(r.delivered),
                str(r.charged_images),
                _usd(r.money_difference),
                _usd(r.reserved_after),
                "yes" if r.cli_matches else "**no**",
            ]
            for r in reports
        ],
    )
    outage, kill = reports
    lines = [
        "Money difference: for every key, its balance after the run less (its balance before"
        f" − ${PRICE} × the images its clients received), summed over keys. Statuses are what"
        ' the clients got; "no answer" is a connection closed without a response.',
        "",
        table.markdown(),
        "",
        f"- Outage run: {outage.statuses[500]} × 500 and {outage.statuses[DROPPED]} requests"
        f" without an answer; every 503 carried Retry-After: {outage.missing_retry_after == 0}."
        f" Took {outage.seconds:.0f} s.",
        f"- Kill run: the kill cut {kill.dropped_by_kill} request(s) in flight; the restarted"
        f" server was ready {kill.ready_after_restart_s or 0:.1f} s after its start, and the"
        " balances were read at once then, with nothing held. Only requests the kill cut"
        " can differ: an outcome journalled before the kill whose bytes never left is"
        f" charged; images charged − delivered: {kill.charged_images - kill.delivered:+d}.",
    ]
    if quick:
        lines.insert(0, "**Quick mode**: small load and short faults.\n")
    return "\n".join(lines)


def run(quick: bool, out: Path) -> Outcome:
    with tempfile.TemporaryDirectory(prefix="murano-faults-") as work:
        reports = asyncio.run(_runs(quick, Path(work)))
    title = "Faults: outages and kill -9 under load" + (" (quick)" if quick else "")
    path = write_result(out, "faults", title, report_markdown(reports, quick))
    outage, kill = reports
    summary = (
        f"[faults.md](faults.md): outage run {outage.requests} requests, "
        f"{outage.statuses[500]} × 500, {outage.statuses[DROPPED]} unanswered, money "
        f"difference ${_usd(outage.money_difference)}; kill run: nothing held after restart "
        f"({_usd(kill.reserved_after)})"
    )
    return Outcome(path, summary)


def main(argv: list[str] | None = None) -> int:
    return benchmark_main(run, __doc__.split("\n\n")[0], argv)


if __name__ == "__main__":
    sys.exit(main())
