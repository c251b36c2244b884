"""A task's exception comes back from ``get()`` as the same class with the same args, on every repository."""

from __future__ import annotations

import asyncio
import errno
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from adapters.sqlite import SqliteJobRepository
from application.engine import Engine
from application.outcomes import error_info
from application.ports import Commit
from domain.job import ErrorInfo, Job
from domain.states import JobState
from entrypoints.celery_compat import TaskError, embedded_engine, states
from entrypoints.compat.exceptions import exception_from
from tests.integration.conftest import Storage
from tests.integration.fidelity_tasks import (
    ExpectedException,
    bad_value,
    fail,
    fail_unpickleable,
    missing_file,
    retry_expected,
)


@pytest.fixture
async def engine(storage: Storage) -> AsyncIterator[Engine]:
    modules = ["tests.integration.fidelity_tasks"]
    async with embedded_engine(task_modules=modules, **storage.engine_options()) as running:
        yield running


@pytest.mark.usefixtures("engine")
class TestThroughTheEngine:
    async def test_a_failed_tasks_exception_is_equal_to_the_one_it_raised(self) -> None:
        result = await fail.delay("test")
        assert await result.get(timeout=5, propagate=False) == ExpectedException("Task expected to fail", "test")
        with pytest.raises(ExpectedException) as raised:
            await result.get(timeout=5)
        assert raised.value.args == ("Task expected to fail", "test")
        assert raised.value.__notes__[0].startswith("remote traceback:\nTraceback")
        assert result.state == states.FAILURE
        assert result.info == ExpectedException("Task expected to fail", "test")

    async def test_a_retrying_tasks_exception_is_its_result_while_it_waits(self) -> None:
        result = await retry_expected.delay("again")
        for _ in range(500):
            if result.state == states.RETRY:
                break
            await asyncio.sleep(0.01)
        assert result.state == states.RETRY
        assert result.info == ExpectedException("retrying", "again")
        await result.revoke()

    async def test_a_builtin_keeps_all_its_args(self) -> None:
        result = await bad_value.delay("bad value", 42)
        with pytest.raises(ValueError, match="bad value") as raised:
            await result.get(timeout=5)
        assert raised.value.args == ("bad value", 42)

    async def test_a_file_not_found_error_keeps_its_errno_and_filename(self, tmp_path: Path) -> None:
        path = str(tmp_path / "nope.txt")
        with pytest.raises(FileNotFoundError) as raised:
            await (await missing_file.delay(path)).get(timeout=5)
        assert (raised.value.errno, raised.value.filename) == (errno.ENOENT, path)

    async def test_an_exception_that_cannot_be_rebuilt_names_its_class_and_args(self) -> None:
        result = await fail_unpickleable.delay("foo", "bar")
        with pytest.raises(TaskError) as raised:
            await result.get(timeout=5)
        assert type(raised.value).__name__ == "UnpickleableException"
        assert "UnpickleableException" in str(raised.value) and "foo" in str(raised.value)
        assert result.status == states.FAILURE


class TestStoredRows:
    """SQLite stores ErrorInfo as JSON: the new fields round-trip, and rows written before them still read."""

    async def test_an_error_with_module_and_args_round_trips(self, tmp_path: Path) -> None:
        try:
            raise ExpectedException("Task expected to fail", "test", {"n": [1, 2]})
        except ExpectedException as exc:
            error = error_info(exc)
        path = tmp_path / "round.db"
        await _store_failed(path, "a", error)
        read = await _read(path, "a")
        assert read.error == error and read.error is not None
        assert exception_from(read.error) == ExpectedException("Task expected to fail", "test", {"n": [1, 2]})

    async def test_an_error_row_written_before_module_and_args_still_reads_and_rebuilds(self, tmp_path: Path) -> None:
        path = tmp_path / "old.db"
        await _store_failed(path, "a", ErrorInfo(type="Placeholder", message="x"))
        connection = sqlite3.connect(path, isolation_level=None)
        try:
            old = '{"type":"KeyError","message":"\'k\'","traceback":"tb"}'
            assert connection.execute("UPDATE jobs SET error = ? WHERE id = 'a'", (old,)).rowcount == 1
        finally:
            connection.close()
        read = await _read(path, "a")
        assert read.error == ErrorInfo(type="KeyError", message="'k'", traceback="tb") and read.error is not None
        rebuilt = exception_from(read.error)
        assert type(rebuilt) is KeyError and rebuilt.args == ("'k'",)


async def _store_failed(path: Path, job_id: str, error: ErrorInfo) -> None:
    job = Job(id=job_id, task="fidelity.fail", due_at=1.0, created_at=1.0)
    failed = job.started(owner="w", now=1.0, lease_until=2.0).failed(error, now=1.5)
    assert failed.state == JobState.FAILURE
    repo = SqliteJobRepository(path)
    await repo.open()
    try:
        await repo.commit(Commit(jobs=[failed]))
    finally:
        await repo.close()


async def _read(path: Path, job_id: str) -> Job:
    repo = SqliteJobRepository(path)
    await repo.open()
    try:
        job = await repo.get(job_id)
    finally:
        await repo.close()
    assert job is not None
    return job
