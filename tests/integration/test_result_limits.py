"""Issue 11, finding 1: results, progress meta, step arguments and workflows are bounded, on every repository."""

from __future__ import annotations

import os
import resource
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from application.engine import Engine
from entrypoints.celery_compat import chain, embedded_engine, group
from entrypoints.container import Container
from entrypoints.settings import Settings
from tests.integration import limit_tasks
from tests.integration.conftest import Storage
from tests.integration.limit_tasks import big_meta, big_text, echo


def _container(db_path: str | None, **limits: int) -> Container:
    persistence = "memory" if db_path is None else "sqlite"
    return Container(settings=Settings(db_path=db_path or "", persistence=persistence, **limits))  # type: ignore[arg-type]


@pytest.fixture
async def engine(storage: Storage) -> AsyncIterator[Engine]:
    limit_tasks.RUNS.clear()
    container = storage.container(max_result_bytes=64 * 1024, max_step_args_bytes=256 * 1024)
    async with embedded_engine(task_modules=["tests.integration.limit_tasks"], container=container) as running:
        yield running


async def _finished(engine: Engine, ident: str, timeout: float = 10.0) -> object:
    return await engine.jobs.wait(ident, timeout)


class TestBoundedResults:
    async def test_a_result_past_the_limit_fails_with_result_too_large_naming_limit_and_size(
        self, engine: Engine
    ) -> None:
        handle = await big_text.delay(100_000)
        with pytest.raises(ValueError, match=r"100002 bytes as JSON, over the limit of 65536 bytes"):
            await handle.get(timeout=5)
        job = await engine.jobs.get(handle.id)
        assert job.error is not None and job.error.type == "ResultTooLarge" and job.result is None
        assert "GEEKBLOG_MAX_RESULT_BYTES" in job.error.message
        assert limit_tasks.RUNS["big_text"] == 1
        assert await (await big_text.delay(1000)).get(timeout=5) == "x" * 1000

    async def test_progress_meta_past_the_limit_fails_the_job_before_it_is_stored(self, engine: Engine) -> None:
        handle = await big_meta.delay(100_000)
        with pytest.raises(ValueError, match="progress meta"):
            await handle.get(timeout=5)
        job = await engine.jobs.get(handle.id)
        assert job.error is not None and job.error.type == "ResultTooLarge" and job.progress is None

    async def test_a_group_member_given_too_large_a_result_fails_unrun_and_the_workflow_fails(
        self, engine: Engine
    ) -> None:
        # 4 x 60 KB results (each under the 64 KiB result limit) make a 240 KB list; each member of the
        # next group would get it: under 256 KiB of arguments. The third group's members would get 4 of them.
        canvas = chain(echo.s("y" * 60_000), group(echo.s() for _ in range(4)), group(echo.s() for _ in range(4)))
        result = await canvas.apply_async()
        with pytest.raises(ValueError, match=r"GEEKBLOG_MAX_(RESULT|STEP_ARGS)_BYTES"):
            await result.get(timeout=10)
        workflow = await engine.jobs.find(result.id)
        assert workflow.state == "FAILURE"
        assert workflow.error is not None and workflow.error.type == "ResultTooLarge"


def _rss_bytes() -> int:
    with open(f"/proc/{os.getpid()}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # pragma: no cover


def _db_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.parent.glob(f"{path.name}*") if not f.name.endswith(".lock"))


async def test_the_issues_amplifying_canvas_ends_failure_with_memory_and_database_growth_bounded(
    tmp_path: Path,
) -> None:
    """The issue's 50 KB canvas: a 50,000-character echo, then five groups of four echoes. Unbounded it
    stored 51 MB as its result, grew the database by 200 MB and RSS by 355 MB. With the default limits
    (1 MiB results, 2 MiB step arguments, 64 MiB per workflow) it fails with ResultTooLarge."""
    path = tmp_path / "engine.db"
    container = _container(str(path))  # the default limits
    async with embedded_engine(task_modules=["tests.integration.limit_tasks"], container=container) as engine:
        assert engine.workflows.limits.max_result_bytes == 1_048_576
        canvas = chain(echo.s("z" * 50_000), *(group(echo.s() for _ in range(4)) for _ in range(5)))
        await (await echo.delay(1)).get(timeout=5)  # warm up
        rss_before, db_before = _rss_bytes(), _db_bytes(path)
        result = await canvas.apply_async()
        with pytest.raises(ValueError, match=r"GEEKBLOG_MAX_(RESULT|STEP_ARGS|WORKFLOW)_BYTES"):
            await result.get(timeout=60)
        workflow = await engine.jobs.find(result.id)
        assert workflow.state == "FAILURE" and workflow.error is not None
        assert workflow.error.type == "ResultTooLarge", workflow.error
        rss_growth, db_growth = _rss_bytes() - rss_before, _db_bytes(path) - db_before
    print(f"RSS growth {rss_growth / 2**20:.1f} MiB, database growth {db_growth / 2**20:.1f} MiB")
    assert db_growth < 32 * 2**20, f"the database grew by {db_growth / 2**20:.1f} MiB"
    assert rss_growth < 120 * 2**20, f"RSS grew by {rss_growth / 2**20:.1f} MiB"


def test_the_limits_come_from_the_environment_and_a_too_small_one_stops_the_service() -> None:
    from entrypoints.settings import SettingsError

    settings = Settings.from_env(
        {
            "GEEKBLOG_PERSISTENCE": "memory",
            "GEEKBLOG_MAX_RESULT_BYTES": "2048",
            "GEEKBLOG_MAX_STEP_ARGS_BYTES": "4096",
            "GEEKBLOG_MAX_WORKFLOW_BYTES": "65536",
        }
    )
    engine = Container(settings=settings).engine()
    assert (engine.workflows.limits.max_result_bytes, engine.workflows.limits.max_step_args_bytes) == (2048, 4096)
    assert engine.workflows.limits.max_workflow_bytes == 65536
    assert Container(settings=Settings(persistence="memory")).engine().workflows.limits.max_result_bytes == 2**20
    with pytest.raises(SettingsError, match="GEEKBLOG_MAX_RESULT_BYTES"):
        Settings.from_env({"GEEKBLOG_MAX_RESULT_BYTES": "10"})
