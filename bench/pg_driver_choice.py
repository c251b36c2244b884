"""Which PostgreSQL driver the repository uses: asyncpg or psycopg 3, measured on the operations it runs most.

    python bench/pg_driver_choice.py [--dsn postgresql://postgres@127.0.0.1:5432/postgres] [--ops 2000] [--runs 3]

On a scratch database (``gb_bench_<random>``, dropped ``WITH (FORCE)`` at the end), for each driver, one
connection, operations one after the other on the event loop the service runs (uvloop):

1. ``insert``: ``BEGIN; INSERT`` one job-like row ``; COMMIT``;
2. ``claim``: ``BEGIN;`` ``SELECT … FOR UPDATE SKIP LOCKED LIMIT 1`` and ``UPDATE`` of that row to STARTED
   in one statement ``; COMMIT`` (the queue is filled beforehand);
3. the same two with ``synchronous_commit = off``, where the WAL flush no longer hides what the driver
   itself costs per round trip.

Prints operations per second (median of ``--runs``) as a Markdown table. Never fails on a timing.
psycopg is not a dependency of the project: install it beside to run this (``pip install
"psycopg[binary]==3.3.9"``).

Measured here (2 cores, load ~2 from other work, PostgreSQL 15, 5 runs of 2,000): with
``synchronous_commit = off`` asyncpg did 7,869 inserts/s and 6,535 claims/s against psycopg's 4,340 and
3,840 (x1.8 and x1.7, steady across runs); with it ``on`` both are bound by the WAL flush and the figures
swing 5x from run to run (asyncpg 756-4,852 inserts/s, psycopg 557-4,340), with no steady winner. So
asyncpg: the driver's own cost per round trip is about half, and nothing in the repository needs what
psycopg alone offers (a blocking API: PostgreSQL gives the Celery thread bridge no blocking reads anyway).
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import psycopg
import uvloop

SCHEMA = """
CREATE TABLE bench_jobs (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    task TEXT NOT NULL,
    args TEXT NOT NULL,
    state TEXT NOT NULL,
    priority BIGINT NOT NULL,
    due_at DOUBLE PRECISION NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    started_at DOUBLE PRECISION,
    lease_owner TEXT,
    lease_expires_at DOUBLE PRECISION
);
CREATE INDEX bench_jobs_claim ON bench_jobs (priority DESC, due_at, seq) WHERE state IN ('PENDING', 'RETRY');
"""

INSERT = "INSERT INTO bench_jobs (id, task, args, state, priority, due_at) VALUES ($1, $2, $3, 'PENDING', $4, $5)"
CLAIM = """
    WITH picked AS (
        SELECT seq FROM bench_jobs WHERE state IN ('PENDING', 'RETRY') AND due_at <= $1
        ORDER BY priority DESC, due_at, seq LIMIT 1 FOR UPDATE SKIP LOCKED
    )
    UPDATE bench_jobs AS j
    SET state = 'STARTED', started_at = $1, attempts = j.attempts + 1, lease_owner = $2, lease_expires_at = $3
    FROM picked WHERE j.seq = picked.seq
    RETURNING j.id, j.task, j.args, j.attempts
"""
ARGS = '[1, 2, {"k": "v"}]'


def _psycopg_sql(sql: str) -> str:
    for index in range(9, 0, -1):
        sql = sql.replace(f"${index}", "%s")
    return sql


class Driver:
    """One connection of one driver, behind the few calls the benchmark makes."""

    name = ""

    async def insert(self, job_id: str) -> None: ...

    async def claim(self, now: float) -> object: ...

    async def execute(self, sql: str) -> None: ...

    async def close(self) -> None: ...


class Asyncpg(Driver):
    """asyncpg: binary protocol, statements prepared and cached on first use."""

    name = "asyncpg 0.32.0"

    def __init__(self, connection: asyncpg.Connection) -> None:
        self._c = connection

    @classmethod
    async def connect(cls, dsn: str) -> Asyncpg:
        return cls(await asyncpg.connect(dsn))

    async def insert(self, job_id: str) -> None:
        async with self._c.transaction():
            await self._c.execute(INSERT, job_id, "bench.noop", ARGS, 0, 0.0)

    async def claim(self, now: float) -> object:
        async with self._c.transaction():
            return await self._c.fetchrow(CLAIM, now, "bench", now + 60)

    async def execute(self, sql: str) -> None:
        await self._c.execute(sql)

    async def close(self) -> None:
        await self._c.close()


class Psycopg(Driver):
    """psycopg 3 (C speedups), statements prepared from the first execution (``prepare_threshold=0``)."""

    name = "psycopg 3.3.9 (binary)"

    def __init__(self, connection: psycopg.AsyncConnection[Any]) -> None:
        self._c = connection
        self._insert = _psycopg_sql(INSERT)
        self._claim = CLAIM.replace("$1", "%(now)s").replace("$2", "%(owner)s").replace("$3", "%(until)s")

    @classmethod
    async def connect(cls, dsn: str) -> Psycopg:
        connection = await psycopg.AsyncConnection.connect(dsn, autocommit=True, prepare_threshold=0)
        return cls(connection)

    async def insert(self, job_id: str) -> None:
        async with self._c.transaction():
            await self._c.execute(self._insert, (job_id, "bench.noop", ARGS, 0, 0.0))

    async def claim(self, now: float) -> object:
        async with self._c.transaction():
            cursor = await self._c.execute(self._claim, {"now": now, "owner": "bench", "until": now + 60})
            return await cursor.fetchone()

    async def execute(self, sql: str) -> None:
        await self._c.execute(sql)

    async def close(self) -> None:
        await self._c.close()


async def _rate(ops: int, step: Callable[[int], Awaitable[object]]) -> float:
    for index in range(min(200, ops)):  # warm-up: prepared statements, caches
        await step(-index - 1)
    started = time.perf_counter()
    for index in range(ops):
        await step(index)
    return ops / (time.perf_counter() - started)


async def _measure(driver: Driver, ops: int, run: int) -> dict[str, float]:
    figures: dict[str, float] = {}
    for durability in ("on", "off"):
        await driver.execute(f"SET synchronous_commit = {durability}")
        await driver.execute("TRUNCATE bench_jobs")
        prefix = f"{run}-{durability}-"
        figures[f"insert (sync {durability})"] = await _rate(ops, lambda i, p=prefix: driver.insert(f"{p}{i}"))
        # the queue now holds ops + warm-up rows; claim as many as were measured
        figures[f"claim (sync {durability})"] = await _rate(ops, lambda i: driver.claim(time.time()))
    return figures


async def main(dsn: str, ops: int, runs: int) -> int:
    scratch = f"gb_bench_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(dsn)
    await admin.execute(f'CREATE DATABASE "{scratch}"')
    target = dsn.rsplit("/", 1)[0] + f"/{scratch}"
    results: dict[str, dict[str, list[float]]] = {}
    try:
        setup = await asyncpg.connect(target)
        await setup.execute(SCHEMA)
        await setup.close()
        for run in range(runs):
            for connect in (Asyncpg.connect, Psycopg.connect):  # interleaved, so drift hits both alike
                driver = await connect(target)
                try:
                    for name, rate in (await _measure(driver, ops, run)).items():
                        results.setdefault(driver.name, {}).setdefault(name, []).append(rate)
                finally:
                    await driver.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{scratch}" WITH (FORCE)')
        await admin.close()
    columns = list(next(iter(results.values())))
    print(f"\n{ops} operations per figure, median of {runs} runs, one connection, uvloop; operations/s\n")
    print("| driver | " + " | ".join(columns) + " |")
    print("|---|" + "---:|" * len(columns))
    for name, figures in results.items():
        print(f"| {name} | " + " | ".join(f"{statistics.median(figures[c]):,.0f}" for c in columns) + " |")
    first, second = list(results)
    ratios = ", ".join(
        f"{c}: {statistics.median(results[first][c]) / statistics.median(results[second][c]):.2f}" for c in columns
    )
    print(f"\n{first} / {second}: {ratios}")
    print("\nevery run (operations/s):")
    for name, figures in results.items():
        print(f"  {name}: " + "; ".join(f"{c} " + " ".join(f"{r:,.0f}" for r in figures[c]) for c in columns))
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--ops", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=3)
    options = parser.parse_args()
    sys.exit(uvloop.run(main(options.dsn, options.ops, options.runs)))
