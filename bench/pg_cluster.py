"""Engines sharing one PostgreSQL database: how fast an idle engine hears of work, what a burst costs in
notifications, and what relaying events costs a busy engine.

    python bench/pg_cluster.py [--server postgresql://postgres@127.0.0.1:5432/postgres] [--jobs 2000] [--wakeups 50]

On a scratch database of its own (created on ``--server``, dropped at the end), in this process:

1. wake-up latency: ``--wakeups`` sequential submissions through an engine that does not dispatch, each
   timed from its commit to its start on an idle second engine (p50/p95/max), the slow poll at 5 s;
2. a burst: ``--jobs`` submissions at once through that engine, run by the other: seconds, and the
   notifications the submitting engine sent;
3. one engine submitting and running ``--jobs`` no-op jobs, with its link to other engines and with the
   link of an engine alone (nothing relayed): jobs/s each way.

Prints a Markdown table; timings never fail anything.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import secrets
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402
from dependency_injector import providers  # noqa: E402

from adapters.no_peers import NoPeers  # noqa: E402
from adapters.postgres import PostgresPeerLink  # noqa: E402
from application.engine import Engine  # noqa: E402
from domain.canvas import Signature  # noqa: E402
from domain.job import Job  # noqa: E402
from entrypoints.celery_compat import create_compatible_task  # noqa: E402
from entrypoints.container import Container  # noqa: E402
from entrypoints.settings import Settings  # noqa: E402


@create_compatible_task(name="bench.cluster_noop")
def noop(value: int) -> int:
    return value


class Started:
    """The dispatcher's trace hook: when each job started on this engine."""

    def __init__(self) -> None:
        self.at: dict[str, float] = {}
        self.event = asyncio.Event()

    def received(self, job: Job) -> None:
        self.at[job.id] = time.perf_counter()
        self.event.set()

    def finished(self, job: Job, outcome: Any, **_: Any) -> None:
        return None


def engine_on(url: str, *, alone: bool = False) -> tuple[Container, Engine, Started]:
    container = Container(settings=Settings(persistence="postgres", database_url=url, max_concurrent_tasks=10))
    if alone:
        container.peer_link.override(providers.Object(NoPeers()))
    engine = container.engine()
    started = Started()
    engine.dispatcher.trace = started
    return container, engine, started


async def until_started(started: Started, job_ids: list[str], timeout: float = 120.0) -> None:
    deadline = time.perf_counter() + timeout
    while not all(job_id in started.at for job_id in job_ids):
        if time.perf_counter() > deadline:
            raise TimeoutError("jobs did not start in time")
        started.event.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(started.event.wait(), 1.0)


async def until_done(engine: Engine, job_ids: list[str], timeout: float = 120.0) -> None:
    deadline = time.perf_counter() + timeout
    for job_id in job_ids:
        await engine.jobs.wait(job_id, max(deadline - time.perf_counter(), 0.001))


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(int(fraction * len(ordered)), len(ordered) - 1)]


async def two_engines(url: str, jobs: int, wakeups: int) -> list[tuple[str, str]]:
    web_container, web, _ = engine_on(url)
    _, worker, started = engine_on(url)
    await web.start()
    await worker.start()
    try:
        await web.dispatcher.stop()
        latencies: list[float] = []
        for index in range(wakeups):
            job = await web.jobs.submit(Signature(task=noop.name, args=[index]))
            committed = time.perf_counter()
            await until_started(started, [job.id])
            latencies.append(started.at[job.id] - committed)
        link = web_container.peer_link()
        assert isinstance(link, PostgresPeerLink)
        before = link.notifications
        begun = time.perf_counter()
        burst = await asyncio.gather(*(web.jobs.submit(Signature(task=noop.name, args=[i])) for i in range(jobs)))
        await until_done(worker, [job.id for job in burst])
        seconds = time.perf_counter() - begun
        sent = link.notifications - before
    finally:
        await worker.stop()
        await web.stop()
    return [
        (f"wake-up of an idle engine, p50 ({wakeups} submissions)", f"{percentile(latencies, 0.5) * 1000:.1f} ms"),
        ("wake-up p95 / max", f"{percentile(latencies, 0.95) * 1000:.1f} / {max(latencies) * 1000:.1f} ms"),
        (f"{jobs} submitted at once through one engine, run by the other", f"{seconds:.2f} s"),
        ("notifications the submitting engine sent for them", f"{sent}"),
    ]


async def one_engine(url: str, jobs: int, *, alone: bool) -> float:
    _, engine, _ = engine_on(url, alone=alone)
    await engine.start()
    try:
        begun = time.perf_counter()
        submitted = await asyncio.gather(
            *(engine.jobs.submit(Signature(task=noop.name, args=[i])) for i in range(jobs))
        )
        await until_done(engine, [job.id for job in submitted])
        return jobs / (time.perf_counter() - begun)
    finally:
        await engine.stop()


async def run(server: str, jobs: int, wakeups: int) -> list[tuple[str, str]]:
    name = f"gb_bench_{secrets.token_hex(6)}"
    admin = await asyncpg.connect(server)
    await admin.execute(f'CREATE DATABASE "{name}"')
    parts = urlsplit(server)
    url = urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, ""))
    try:
        rows = await two_engines(url, jobs, wakeups)
        for alone in (False, True, False, True):
            rate = await one_engine(url, jobs, alone=alone)
            label = "alone (nothing relayed)" if alone else "relaying its events"
            rows.append((f"one engine, {jobs} jobs submitted at once and run, {label}", f"{rate:,.0f} jobs/s"))
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--wakeups", type=int, default=50)
    args = parser.parse_args()
    rows = asyncio.run(run(args.server, args.jobs, args.wakeups))
    print("| measure | value |\n| --- | --- |")
    for label, value in rows:
        print(f"| {label} | {value} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
