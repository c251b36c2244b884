"""A process that submits jobs and runs none (``GEEKBLOG_RUN_JOBS=false``, ``embedded_engine(run_jobs=False)``):
a web application beside ``geekblog worker`` processes on one PostgreSQL database, as Celery's producers
beside its workers. Its calls, canvases and results work as with an engine that runs them; its jobs run
on the workers, started at once (the workers are told, not polled), and it is refused where nothing else
could run them.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from domain.states import JobState
from entrypoints.celery_compat import chain, chord, embedded_engine
from entrypoints.settings import Settings, SettingsError
from tests.integration import cluster_tasks
from tests.integration.test_postgres_cluster import POLL, PROMPT, Replica
from tests.support.postgres import empty_tables
from tests.support.waiting import eventually


@pytest.fixture
async def worker(postgres_url: str) -> AsyncIterator[Replica]:
    """One engine that runs jobs, its safety-net poll far above the bounds asserted."""
    await empty_tables(postgres_url)
    cluster_tasks.reset()
    running = await Replica(postgres_url, poll_seconds=POLL).start()
    try:
        yield running
    finally:
        cluster_tasks.release_all()
        await running.engine.stop()


async def test_calls_and_canvases_run_on_the_worker_and_their_results_come_back(
    worker: Replica, postgres_url: str
) -> None:
    async with embedded_engine(database_url=postgres_url, run_jobs=False) as web:
        assert not web.dispatcher.running
        assert web.peers is not None and worker.engine.dispatcher.owner in web.peers.link.peers  # type: ignore[attr-defined]
        result = await cluster_tasks.quick.delay(7)
        assert await asyncio.wait_for(result.get(timeout=PROMPT), PROMPT) == 7
        pipeline = await chain(cluster_tasks.quick.s(1), cluster_tasks.quick.si(2)).apply_async()
        assert await asyncio.wait_for(pipeline.get(timeout=PROMPT), PROMPT) == 2
        fan_in = await chord([cluster_tasks.quick.s(i) for i in range(5)], cluster_tasks.total.s()).apply_async()
        assert await asyncio.wait_for(fan_in.get(timeout=PROMPT), PROMPT) == 10
        ran = set(worker.ran.jobs)
        assert result.id in ran and len(ran) == 1 + 2 + 5 + 1, "every job ran on the worker"


async def test_a_plain_thread_waits_for_its_result_as_a_web_view_would(worker: Replica, postgres_url: str) -> None:
    async with embedded_engine(database_url=postgres_url, run_jobs=False):

        def view() -> object:
            return cluster_tasks.quick.delay(41).get(timeout=PROMPT)

        assert await asyncio.to_thread(view) == 41


async def test_a_revoke_with_terminate_reaches_the_worker_running_the_job(worker: Replica, postgres_url: str) -> None:
    async with embedded_engine(database_url=postgres_url, run_jobs=False) as web:
        held = await cluster_tasks.hold.delay("held")
        await eventually(lambda: held.id in cluster_tasks.STARTED, timeout=PROMPT, what="the job running")
        await held.revoke(terminate=True)
        job = await web.jobs.wait(held.id, timeout=PROMPT)
        assert job.state == JobState.REVOKED and held.id in cluster_tasks.CANCELLED


async def test_it_runs_nothing_itself_even_when_no_worker_is_there(postgres_url: str) -> None:
    await empty_tables(postgres_url)
    async with embedded_engine(database_url=postgres_url, run_jobs=False) as web:
        result = await cluster_tasks.quick.delay(3)  # an engine that runs jobs would store it claimed, STARTED
        stored = await web.jobs.get(result.id)
        assert stored.state == JobState.PENDING and stored.attempts == 0 and web.dispatcher.active_jobs == 0
    worker = await Replica(postgres_url, poll_seconds=POLL).start()
    try:  # a worker that starts later finds it
        assert (await worker.engine.jobs.wait(result.id, timeout=PROMPT)).result == 3
    finally:
        await worker.engine.stop()


@pytest.mark.parametrize("storage", [{"db_path": "x.db"}, {"persistence": "memory"}])
def test_refused_where_no_other_process_could_run_the_jobs(storage: dict[str, str]) -> None:
    with pytest.raises(SettingsError, match="RUN_JOBS=false needs GEEKBLOG_DATABASE_URL"):
        Settings(run_jobs=False, **storage)  # type: ignore[arg-type]


def test_read_from_the_environment(postgres_url: str) -> None:
    environ = {"GEEKBLOG_DATABASE_URL": postgres_url, "GEEKBLOG_RUN_JOBS": "false"}
    assert Settings.from_env(environ).run_jobs is False
    assert Settings.from_env({"GEEKBLOG_DATABASE_URL": postgres_url}).run_jobs is True
