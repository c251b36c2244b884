"""Several engines on one PostgreSQL database (issue 13): a chord whose members run on two engines, its
last members finishing on both at the same moment, joins exactly once with the right result.

Each engine caches the state of the workflows it advances; a commit carries the workflow version its plan
was made on, so a plan made on outcomes the other engine changed since is refused and made again on the
stored outcomes (``Commit.workflow_versions``). Without it, two engines each seeing the other's member
still running would both leave the body unstarted, and the chord would never finish."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

import entrypoints.builtin_tasks  # noqa: F401  (geekblog.add, geekblog.sum)
from application.engine import Engine
from domain.canvas import Chord, Signature
from domain.job import Job
from domain.states import JobState, is_terminal
from entrypoints.container import Container
from entrypoints.settings import Settings
from tests.support.postgres import empty_tables

MEMBERS = 60


class Ran:
    """The dispatcher's trace hook: which jobs this engine ran."""

    def __init__(self) -> None:
        self.jobs: set[str] = set()

    def received(self, job: Job) -> None:
        self.jobs.add(job.id)

    def finished(self, job: Job, outcome: Any, **_: Any) -> None:
        return None


@pytest.fixture
async def two_engines(postgres_url: str) -> AsyncIterator[tuple[Engine, Engine]]:
    await empty_tables(postgres_url)
    engines = [
        Container(settings=Settings(persistence="postgres", database_url=postgres_url, max_concurrent_tasks=4)).engine()
        for _ in range(2)
    ]
    for engine in engines:
        await engine.start()
    try:
        yield engines[0], engines[1]
    finally:
        for engine in engines:
            await engine.stop()


async def test_a_chord_run_by_two_engines_joins_exactly_once(two_engines: tuple[Engine, Engine]) -> None:
    first, second = two_engines
    ran = {first: Ran(), second: Ran()}
    for engine, trace in ran.items():
        engine.dispatcher.trace = trace
    for round_ in range(3):
        header = [Signature(task="geekblog.add", args=[i, round_]) for i in range(MEMBERS)]
        workflow = await first.jobs.submit_canvas(Chord(header=header, body=Signature(task="geekblog.sum")))
        deadline = time.monotonic() + 60
        while not is_terminal((await first.jobs.get_workflow(workflow.id)).state):
            assert time.monotonic() < deadline, f"round {round_}: the chord did not finish within 60 s"
            for engine in (first, second):
                engine.dispatcher.wake()  # stands for the wake-up a new queued job will send (NOTIFY)
            await asyncio.sleep(0.005)
        done = await second.jobs.get_workflow(workflow.id)
        assert done.state == JobState.SUCCESS
        assert done.result == sum(i + round_ for i in range(MEMBERS))
        jobs = await first.jobs.workflow_jobs(workflow.id)
        assert len([job for job in jobs if job.task == "geekblog.sum"]) == 1
        members = {job.id for job in jobs if job.task == "geekblog.add"}
        assert members & ran[first].jobs and members & ran[second].jobs  # both engines ran members
        assert not ran[first].jobs & ran[second].jobs  # and no job ran on both
        assert (await first.repo.get_workflow(workflow.id)).version >= 1  # type: ignore[union-attr]
