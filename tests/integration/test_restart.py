"""Durability across a restart on the same SQLite file: queued work runs, workflows continue."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from entrypoints.celery_compat import AsyncResult, chain, embedded_engine, states
from tests.integration import compat_tasks
from tests.integration.compat_tasks import CALLS, add, blocker, forever, mul, sleepy

MODULES = ["tests.integration.compat_tasks"]


async def until(predicate: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.005)


class TestRestart:
    async def test_queued_and_scheduled_jobs_run_after_a_restart(self, tmp_path: Path) -> None:
        db = str(tmp_path / "engine.db")
        compat_tasks.RELEASE.clear()
        async with embedded_engine(db_path=db, task_modules=MODULES, max_concurrent_tasks=1):
            gate = await blocker.delay()
            await until(lambda: gate.state == states.STARTED)
            queued = [await add.delay(i, i) for i in range(5)]
            scheduled = await add.apply_async((100, 1), countdown=0.3)
            ids = [handle.id for handle in queued]
        compat_tasks.RELEASE.set()
        async with embedded_engine(db_path=db, task_modules=MODULES) as engine:
            results = [await AsyncResult(ident).get(timeout=5) for ident in ids]
            assert results == [0, 2, 4, 6, 8]
            assert await AsyncResult(scheduled.id).get(timeout=5) == 101
            recovered = await engine.jobs.get(gate.id)
            assert recovered.state == states.SUCCESS
            assert recovered.attempts == 2, "the interrupted job's first attempt counts"

    async def test_a_workflow_continues_from_where_it_was(self, tmp_path: Path) -> None:
        db = str(tmp_path / "engine.db")
        CALLS.clear()
        async with embedded_engine(db_path=db, task_modules=MODULES):
            handle = await chain(add.s(1, 1), sleepy.s(0.5), mul.s(10)).apply_async()
            await until(lambda: any(name == "add" for name, _ in CALLS))
        assert handle.id
        async with embedded_engine(db_path=db, task_modules=MODULES):
            assert await AsyncResult(handle.id).get(timeout=5) == 20
        assert [name for name, _ in CALLS].count("add") == 1, "a committed step never runs twice"

    async def test_results_are_readable_by_a_later_engine(self, tmp_path: Path) -> None:
        db = str(tmp_path / "engine.db")
        async with embedded_engine(db_path=db, task_modules=MODULES):
            job = await add.delay(20, 22)
            await job.get(timeout=5)
            workflow = await chain(add.s(1, 2), mul.s(2)).apply_async()
            await workflow.get(timeout=5)
        async with embedded_engine(db_path=db, task_modules=MODULES):
            assert AsyncResult(job.id).state == states.SUCCESS
            assert AsyncResult(job.id).result == 42
            assert await AsyncResult(workflow.id).get(timeout=1) == 6
            assert AsyncResult("not-an-id").state == states.UNKNOWN

    async def test_a_revoked_job_stays_revoked_after_a_restart(self, tmp_path: Path) -> None:
        db = str(tmp_path / "engine.db")
        async with embedded_engine(db_path=db, task_modules=MODULES):
            handle = await forever.delay()
            await until(lambda: handle.state == states.STARTED)
            await handle.revoke(terminate=True)
        async with embedded_engine(db_path=db, task_modules=MODULES):
            assert AsyncResult(handle.id).state == states.REVOKED
