"""Durability across a restart on the same database (a SQLite file, PostgreSQL): queued work runs, workflows
continue. On PostgreSQL the engine stopped first keeps its leases (another engine may share the database),
so the next one recovers its interrupted job once the lease expires: the engines there hold leases of
:data:`PG_LEASE_SECONDS`."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import pytest

from application.engine import Engine
from entrypoints.celery_compat import AsyncResult, chain, embedded_engine, states
from tests.integration import compat_tasks
from tests.integration.compat_tasks import CALLS, add, blocker, forever, mul, sleepy
from tests.integration.conftest import new_storage

MODULES = ["tests.integration.compat_tasks"]
PG_LEASE_SECONDS = 2.0

Engines = Callable[..., AbstractAsyncContextManager[Engine]]


@pytest.fixture(params=["sqlite", "postgres"])
async def engines(request: pytest.FixtureRequest, tmp_path: Path) -> Engines:
    """``engines(**settings)``: a new embedded engine, as a context manager, on the test's one database."""
    storage = await new_storage(request.param, request, tmp_path)
    lease = {"lease_seconds": PG_LEASE_SECONDS} if storage.kind == "postgres" else {}

    def start(max_concurrent_tasks: int = 10) -> AbstractAsyncContextManager[Engine]:
        container = storage.container(max_concurrent_tasks=max_concurrent_tasks, **lease)
        return embedded_engine(task_modules=MODULES, container=container)

    return start


async def until(predicate: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.005)


class TestRestart:
    async def test_queued_and_scheduled_jobs_run_after_a_restart(self, engines: Engines) -> None:
        compat_tasks.RELEASE.clear()
        async with engines(max_concurrent_tasks=1):
            gate = await blocker.delay()
            await until(lambda: gate.state == states.STARTED)
            queued = [await add.delay(i, i) for i in range(5)]
            scheduled = await add.apply_async((100, 1), countdown=0.3)
            ids = [handle.id for handle in queued]
        compat_tasks.RELEASE.set()
        async with engines() as engine:
            results = [await AsyncResult(ident).get(timeout=5) for ident in ids]
            assert results == [0, 2, 4, 6, 8]
            assert await AsyncResult(scheduled.id).get(timeout=5) == 101
            await AsyncResult(gate.id).get(timeout=10)  # on PostgreSQL: once the first engine's lease expired
            recovered = await engine.jobs.get(gate.id)
            assert recovered.state == states.SUCCESS
            assert recovered.attempts == 2, "the interrupted job's first attempt counts"

    async def test_a_workflow_continues_from_where_it_was(self, engines: Engines) -> None:
        CALLS.clear()
        async with engines():
            handle = await chain(add.s(1, 1), sleepy.s(0.5), mul.s(10)).apply_async()
            await until(lambda: any(name == "add" for name, _ in CALLS))
        assert handle.id
        async with engines():
            assert await AsyncResult(handle.id).get(timeout=10) == 20
        assert [name for name, _ in CALLS].count("add") == 1, "a committed step never runs twice"

    async def test_results_are_readable_by_a_later_engine(self, engines: Engines) -> None:
        async with engines():
            job = await add.delay(20, 22)
            await job.get(timeout=5)
            workflow = await chain(add.s(1, 2), mul.s(2)).apply_async()
            await workflow.get(timeout=5)
        async with engines():
            assert AsyncResult(job.id).state == states.SUCCESS
            assert AsyncResult(job.id).result == 42
            assert await AsyncResult(workflow.id).get(timeout=1) == 6
            assert AsyncResult("not-an-id").state == states.UNKNOWN

    async def test_a_revoked_job_stays_revoked_after_a_restart(self, engines: Engines) -> None:
        async with engines():
            handle = await forever.delay()
            await until(lambda: handle.state == states.STARTED)
            await handle.revoke(terminate=True)
        async with engines():
            assert AsyncResult(handle.id).state == states.REVOKED
