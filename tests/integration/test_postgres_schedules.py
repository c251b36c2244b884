"""Schedules across the engines of one PostgreSQL database: a schedule made on a process that runs no jobs (a
web application) is fired promptly by a worker, told by the engines' NOTIFY packet rather than found by its
slow safety re-read (``poll_seconds``, set far above the bound asserted here)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from application.ports import JobFilter
from domain.schedule import Schedule
from entrypoints.celery_compat import embedded_engine
from tests.integration import cluster_tasks
from tests.integration.test_postgres_cluster import POLL, PROMPT, Replica
from tests.support.postgres import empty_tables


@pytest.fixture
async def worker(postgres_url: str) -> AsyncIterator[Replica]:
    await empty_tables(postgres_url)
    cluster_tasks.reset()
    running = await Replica(postgres_url, poll_seconds=POLL).start()
    try:
        yield running
    finally:
        await running.engine.stop()


async def test_a_schedule_made_where_no_job_runs_is_fired_by_a_worker_at_once(
    worker: Replica, postgres_url: str
) -> None:
    async with embedded_engine(database_url=postgres_url, run_jobs=False) as web:
        assert web.schedules is not None and worker.engine.schedules is not None
        made = time.monotonic()
        await web.schedules.create(Schedule(name="s", task="cluster.quick", args=[3], every=1.0))
        deadline = made + 1.0 + PROMPT
        while not (await worker.engine.jobs.list(JobFilter(schedule="s"), limit=1)).items:
            assert time.monotonic() < deadline, f"no tick within {1.0 + PROMPT} s (the re-read is every {POLL} s)"
            await asyncio.sleep(0.02)
        assert worker.engine.schedules.fired >= 1 and web.schedules.fired == 0
        paused = await web.schedules.pause("s")
        assert paused.next_due_at is None
