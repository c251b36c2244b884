"""Throughput and latency of the embedded engine on SQLite (in memory with ``--memory``, on PostgreSQL
with ``--database-url``).

    python bench/embedded_throughput.py [--jobs 5000] [--latency 300] [--concurrency 10] [--db PATH] [--memory]
    python bench/embedded_throughput.py --database-url postgresql://postgres@127.0.0.1:5432/DB [--profile OUT]

``--database-url`` uses that PostgreSQL database (created first when missing, dropped at the end when
this run created it). ``--profile OUT`` writes a cProfile of the whole run to OUT (``pstats`` reads it).

Measures, in this process:

1. submit rate of N no-op jobs (a sequential ``await noop.delay(i)`` loop), then jobs/s from the
   first submit to the last result;
2. p50/p95/p99 of M sequential round trips (``await (await noop.delay(i)).get()``);
3. wall time of a 200-step chain of ``add1`` and of a 1,000-member chord.

Prints a Markdown table. Every result is checked (a wrong one exits non-zero); timings never fail.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import platform
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from entrypoints.celery_compat import chain, chord, create_compatible_task, embedded_engine  # noqa: E402

CHAIN_STEPS = 200
CHORD_MEMBERS = 1000
RESULT_TIMEOUT = 600.0


@create_compatible_task(name="bench.noop")
async def noop(x: Any) -> Any:
    return x


@create_compatible_task(name="bench.add1")
async def add1(x: int) -> int:
    return x + 1


@create_compatible_task(name="bench.tsum")
async def tsum(values: list[int]) -> int:
    return sum(values)


class WrongResult(AssertionError):
    """The engine returned something other than what the task computed."""


def check(what: str, got: Any, want: Any) -> None:
    if got != want:
        raise WrongResult(f"{what}: got {got!r}, expected {want!r}")


def percentile(sorted_values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of already sorted values."""
    if not sorted_values:
        return float("nan")
    rank = max(math.ceil(fraction * len(sorted_values)) - 1, 0)
    return sorted_values[min(rank, len(sorted_values) - 1)]


async def throughput(jobs: int) -> dict[str, float]:
    t0 = time.perf_counter()
    handles = [await noop.delay(i) for i in range(jobs)]
    submitted = time.perf_counter()
    for i, handle in enumerate(handles):
        check(f"noop job {i}", await handle.get(timeout=RESULT_TIMEOUT), i)
    done = time.perf_counter()
    return {
        "submit_seconds": submitted - t0,
        "submit_rate": jobs / (submitted - t0),
        "total_seconds": done - t0,
        "jobs_per_second": jobs / (done - t0),
    }


async def latency(round_trips: int) -> list[float]:
    samples = []
    for i in range(round_trips):
        t0 = time.perf_counter()
        handle = await noop.delay(i)
        result = await handle.get(timeout=RESULT_TIMEOUT)
        samples.append(time.perf_counter() - t0)
        check(f"round trip {i}", result, i)
    return sorted(samples)


async def long_chain() -> float:
    t0 = time.perf_counter()
    handle = await chain(add1.s(0), *[add1.s() for _ in range(CHAIN_STEPS - 1)]).apply_async()
    check(f"{CHAIN_STEPS}-step chain", await handle.get(timeout=RESULT_TIMEOUT), CHAIN_STEPS)
    return time.perf_counter() - t0


async def wide_chord() -> float:
    t0 = time.perf_counter()
    handle = await chord([noop.s(i) for i in range(CHORD_MEMBERS)], tsum.s()).apply_async()
    check(f"{CHORD_MEMBERS}-member chord", await handle.get(timeout=RESULT_TIMEOUT), sum(range(CHORD_MEMBERS)))
    return time.perf_counter() - t0


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


async def run(args: argparse.Namespace, db_path: str | None) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    created = await _create_database(args.database_url) if args.database_url else False
    try:
        async with embedded_engine(
            db_path=db_path, database_url=args.database_url, max_concurrent_tasks=args.concurrency
        ) as engine:
            await _measure(args, engine, rows)
    finally:
        if created:
            await _drop_database(args.database_url)
    return rows


def _admin_url(url: str) -> tuple[str, str]:
    """The server's ``postgres`` database URL and the database name of ``url``."""
    base, _, name = url.rpartition("/")
    return f"{base}/postgres", name.partition("?")[0]


async def _create_database(url: str) -> bool:
    """Create the database of ``url`` when it does not exist; whether this did."""
    import asyncpg

    admin, name = _admin_url(url)
    connection = await asyncpg.connect(admin)
    try:
        if await connection.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            return False
        await connection.execute(f'CREATE DATABASE "{name}"')
        return True
    finally:
        await connection.close()


async def _drop_database(url: str) -> None:
    import asyncpg

    admin, name = _admin_url(url)
    connection = await asyncpg.connect(admin)
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await connection.close()


async def _measure(args: argparse.Namespace, engine: Any, rows: list[tuple[str, str]]) -> None:
    figures = await throughput(args.jobs)
    rows += [
        (f"submit {args.jobs} no-op jobs (sequential `await delay`)", f"{figures['submit_seconds']:.2f} s"),
        ("submit rate", f"{figures['submit_rate']:,.0f} jobs/s"),
        ("first submit → last result", f"{figures['total_seconds']:.2f} s"),
        ("throughput (submit + run + result)", f"{figures['jobs_per_second']:,.0f} jobs/s"),
    ]
    samples = await latency(args.latency)
    for label, fraction in (("p50", 0.50), ("p95", 0.95), ("p99", 0.99)):
        rows.append((f"submit → result latency {label} ({args.latency} round trips)", _ms(samples, fraction)))
    rows.append((f"{CHAIN_STEPS}-step chain of add1", f"{await long_chain():.2f} s"))
    rows.append((f"{CHORD_MEMBERS}-member chord (no-op header, sum body)", f"{await wide_chord():.2f} s"))
    transactions = getattr(engine.repo, "transactions", None)
    if transactions is not None:
        rows.append(("write transactions (group commit)", f"{transactions:,}"))


def _ms(samples: list[float], fraction: float) -> str:
    return f"{percentile(samples, fraction) * 1000:.2f} ms"


def main() -> int:
    parser = argparse.ArgumentParser(description="Throughput and latency of the embedded engine.")
    parser.add_argument("--jobs", type=int, default=5000, help="no-op jobs for the throughput run (5000)")
    parser.add_argument("--latency", type=int, default=300, help="sequential round trips for latency (300)")
    parser.add_argument("--concurrency", type=int, default=10, help="max_concurrent_tasks (10)")
    parser.add_argument("--db", help="SQLite file to use (default: a file in a fresh temporary directory)")
    parser.add_argument("--memory", action="store_true", help="use the in-memory repository instead of SQLite")
    parser.add_argument("--database-url", help="a postgresql:// URL: PostgreSQL instead of SQLite")
    parser.add_argument("--profile", help="write a cProfile of the run to this file")
    parser.add_argument(
        "--loop", choices=["uvloop", "asyncio"], default="uvloop", help="the event loop to run on (uvloop)"
    )
    args = parser.parse_args()
    if args.jobs < 1 or args.latency < 1 or args.concurrency < 1:
        parser.error("--jobs, --latency and --concurrency must be at least 1")

    with tempfile.TemporaryDirectory(prefix="geekblog-bench-") as scratch:
        db_path = None if args.memory or args.database_url else (args.db or os.path.join(scratch, "bench.db"))
        started = time.perf_counter()
        profiler = None
        if args.profile:
            import cProfile

            profiler = cProfile.Profile()
            profiler.enable()
        try:
            if args.loop == "uvloop":
                import uvloop

                rows = uvloop.run(run(args, db_path))
            else:
                rows = asyncio.run(run(args, db_path))
        except WrongResult as exc:
            print(f"WRONG RESULT: {exc}", file=sys.stderr)
            return 1
        elapsed = time.perf_counter() - started
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(args.profile)

    storage = "in memory" if db_path is None else f"SQLite (WAL) at {db_path}"
    if args.database_url:
        storage = f"PostgreSQL at {args.database_url}"
    info = [
        ("storage", storage),
        ("max_concurrent_tasks", str(args.concurrency)),
        ("event loop", args.loop),
        ("python", f"{platform.python_implementation()} {platform.python_version()}"),
        ("sqlite", sqlite3.sqlite_version),
        ("CPUs", f"{os.cpu_count()} x {cpu_model()}"),
        ("platform", platform.platform()),
        ("whole run", f"{elapsed:.1f} s"),
    ]
    print("| measure | value |")
    print("|---|---|")
    for label, value in rows + info:
        print(f"| {label} | {value} |")
    print("\nall results checked: correct")
    return 0


if __name__ == "__main__":
    sys.exit(main())
