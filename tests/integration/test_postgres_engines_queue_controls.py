"""Queue controls with two full engines on one PostgreSQL database: each claims only the named queues it
serves, and a concurrency key holds across both, a job waiting on it starting on either engine as soon as the
holder's outcome is stored there (told by NOTIFY: the poll is set far beyond the test's deadline)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from application.engine import Engine
from domain.canvas import Signature
from domain.job import Job
from entrypoints.compat.tasks import create_compatible_task
from entrypoints.container import Container
from entrypoints.settings import Settings
from tests.support.postgres import empty_tables

RUNNING: dict[str, int] = {}
PEAK: dict[str, int] = {}
RELEASE: dict[str, asyncio.Event] = {}


@create_compatible_task(name="queue_controls.engines.hold")
async def hold(name: str, tag: str) -> str:
    RUNNING[tag] = RUNNING.get(tag, 0) + 1
    PEAK[tag] = max(PEAK.get(tag, 0), RUNNING[tag])
    try:
        await RELEASE.setdefault(name, asyncio.Event()).wait()
    finally:
        RUNNING[tag] -= 1
    return name


class Ran:
    def __init__(self) -> None:
        self.jobs: set[str] = set()

    def received(self, job: Job) -> None:
        self.jobs.add(job.id)

    def finished(self, job: Job, outcome: Any, **_: Any) -> None:
        return None


async def until(condition: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        await asyncio.sleep(0.01)


@pytest.fixture
async def engines(postgres_url: str, request: pytest.FixtureRequest) -> AsyncIterator[list[Engine]]:
    RUNNING.clear()
    PEAK.clear()
    RELEASE.clear()
    await empty_tables(postgres_url)
    queues: list[str | None] = getattr(request, "param", [None, None])
    built = [
        Container(
            settings=Settings(
                persistence="postgres", database_url=postgres_url, max_concurrent_tasks=4, poll_seconds=600, queues=q
            )
        ).engine()
        for q in queues
    ]
    for engine in built:
        await engine.start()
    try:
        yield built
    finally:
        for event in RELEASE.values():
            event.set()
        for engine in built:
            await engine.stop(grace=5)


async def test_a_key_holds_across_engines_and_its_next_job_starts_when_told(engines: list[Engine]) -> None:
    first, second = engines
    ids = []
    for index in range(4):
        submitter = engines[index % 2]
        signature = Signature(task=hold.name, args=[f"k{index}", "project:1"], concurrency_key="project:1")
        ids.append((await submitter.jobs.submit(signature)).id)
    for index in range(4):
        await until(lambda index=index: sum(RUNNING.values()) == 1 and f"k{index}" in RELEASE, f"k{index} runs")
        RELEASE[f"k{index}"].set()
        await first.jobs.wait(ids[index], timeout=15)
    assert PEAK["project:1"] == 1
    for job_id in ids:
        job = await second.jobs.get(job_id)
        assert job.state == "SUCCESS"


@pytest.mark.parametrize("engines", [["ai", "default:2"]], indirect=True)
async def test_each_engine_claims_only_the_queues_it_serves(engines: list[Engine]) -> None:
    ai_engine, default_engine = engines
    ran = {ai_engine: Ran(), default_engine: Ran()}
    for engine, trace in ran.items():
        engine.dispatcher.trace = trace
    ai = [
        (await default_engine.jobs.submit(Signature(task=hold.name, args=[f"a{i}", "ai"], queue="ai"))).id
        for i in range(3)
    ]
    plain = [(await ai_engine.jobs.submit(Signature(task=hold.name, args=[f"d{i}", "default"]))).id for i in range(3)]
    await until(lambda: RUNNING.get("ai") == 3 and RUNNING.get("default") == 2, "3 ai and 2 default jobs run")
    for name in list(RELEASE):
        RELEASE[name].set()
    await until(lambda: "d2" in RELEASE, "the third default job runs once a slot frees")
    RELEASE["d2"].set()
    for job_id in ai + plain:
        await ai_engine.jobs.wait(job_id, timeout=15)
    assert set(ai) <= ran[ai_engine].jobs and not set(ai) & ran[default_engine].jobs
    assert set(plain) <= ran[default_engine].jobs and not set(plain) & ran[ai_engine].jobs
    assert PEAK["default"] == 2


@pytest.mark.parametrize("engines", [["a", "b"]], indirect=True)
async def test_a_key_let_go_on_one_engine_wakes_the_other(engines: list[Engine]) -> None:
    engine_a, engine_b = engines
    holder = Signature(task=hold.name, args=["holder", "k"], queue="a", concurrency_key="shared")
    waiter = Signature(task=hold.name, args=["waiter", "k"], queue="b", concurrency_key="shared")
    holder_id = (await engine_a.jobs.submit(holder)).id
    await until(lambda: "holder" in RELEASE, "the holder runs on engine a")
    waiter_id = (await engine_b.jobs.submit(waiter)).id
    assert (await engine_b.jobs.get(waiter_id)).state == "PENDING"
    RELEASE["holder"].set()
    await engine_a.jobs.wait(holder_id, timeout=15)
    await until(lambda: "waiter" in RELEASE, "engine b starts the waiter once told the key was let go")
    RELEASE["waiter"].set()
    await engine_b.jobs.wait(waiter_id, timeout=15)
    assert PEAK["k"] == 1
