"""Issue 11, finding 4: an outcome that cannot be stored fails its job at once (memory, SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import pytest

from application.engine import Engine
from application.ports import Commit
from domain.job import Job
from entrypoints.celery_compat import embedded_engine
from tests.integration import limit_tasks
from tests.integration.conftest import Storage
from tests.integration.limit_tasks import huge_int
from tests.support.storage import blocking_access
from tests.support.waiting import stays

FOUR_THOUSAND_THREE_HUNDRED_DIGITS = int("9" * 4300)


@pytest.fixture
async def engine(storage: Storage) -> AsyncIterator[Engine]:
    limit_tasks.RUNS.clear()
    modules = ["tests.integration.limit_tasks"]
    async with embedded_engine(task_modules=modules, **storage.engine_options()) as running:
        yield running


async def _finished(engine: Engine, ident: str, timeout: float = 10.0) -> object:
    return await engine.jobs.wait(ident, timeout)


class TestResultsThatCannotBeStored:
    async def test_an_integer_past_64_bits_at_delay_is_a_type_error(self, engine: Engine) -> None:
        with pytest.raises(TypeError, match="64-bit signed range"):
            await limit_tasks.pair.delay(2**63, 1)
        with pytest.raises(TypeError, match="64-bit signed range"):
            await limit_tasks.pair.delay(FOUR_THOUSAND_THREE_HUNDRED_DIGITS, 1)
        assert await (await limit_tasks.pair.delay(2**63 - 1, -(2**63))).get(timeout=5) == -1

    async def test_a_result_past_64_bits_fails_its_job_at_once_with_result_not_storable(self, engine: Engine) -> None:
        handle = await huge_int.delay()
        with pytest.raises(TypeError, match="64-bit signed range"):
            await handle.get(timeout=5)
        job = await engine.jobs.get(handle.id)
        assert job.state == "FAILURE" and job.error is not None and job.error.type == "ResultNotStorable"
        assert job.attempts == 1 and limit_tasks.RUNS["huge_int"] == 1

    async def test_the_issues_add_of_two_4300_digit_ints_fails_once_and_is_not_run_again(
        self, engine: Engine, caplog: pytest.LogCaptureFixture
    ) -> None:
        # Arguments that reached storage before the edge checked them (an older version, another writer):
        # the sum has 4,301 digits, past what any encoder can write.
        now = engine.dispatcher._clock.now()
        job = Job(
            id="big-add",
            task="geekblog.add",
            args=[FOUR_THOUSAND_THREE_HUNDRED_DIGITS, FOUR_THOUSAND_THREE_HUNDRED_DIGITS],
            due_at=now,
            created_at=now,
        )
        await engine.repo.commit(Commit(jobs=[job]))
        engine.dispatcher.wake()
        with caplog.at_level(logging.WARNING):
            loop = asyncio.get_running_loop()
            started = loop.time()
            done = await _finished(engine, "big-add")
            took = loop.time() - started
        assert isinstance(done, Job)
        assert done.state == "FAILURE" and done.error is not None
        assert done.error.type == "ResultNotStorable", done.error
        assert done.attempts == 1 and done.result is None
        assert took < 5, f"took {took:.1f} s: storing was retried"
        # not recovered, not run again
        await stays(lambda: blocking_access(engine.repo).peek("big-add").attempts == 1, 0.2, what="a single attempt")
        retries = [r for r in caplog.records if "retrying" in r.getMessage() or "WorkerLost" in r.getMessage()]
        assert retries == []
