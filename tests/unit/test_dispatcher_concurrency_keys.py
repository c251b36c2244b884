"""The dispatcher with concurrency keys: at most ``limit`` jobs with a key run at once, the others wait in
order and start as soon as a holder's outcome is stored; a job that replaced itself with a workflow holds its
key until that workflow ends (how the article pipeline keeps one workflow per project)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from adapters.asyncio_runner import AsyncioRunner
from adapters.event_bus import InProcessEventBus
from adapters.memory_job_repository import InMemoryJobRepository
from application.engine import Engine, EngineSettings
from application.execution import ReplaceRequested
from application.registry import TaskDefinition, TaskRegistry
from domain.canvas import Signature
from domain.states import JobState
from tests.unit.fakes import CountingIds, FakeClock
from tests.unit.test_dispatcher_queues import Gates, until


@pytest.fixture
def gates() -> Gates:
    return Gates()


@pytest.fixture
async def engine(gates: Gates) -> AsyncIterator[Engine]:
    registry = TaskRegistry()
    registry.register(TaskDefinition(name="gated", fn=gates.gated))

    def orchestrate(name: str, key: str) -> None:
        raise ReplaceRequested(Signature(task="gated", args=[name, key]))

    registry.register(TaskDefinition(name="orchestrate", fn=orchestrate))
    registry.register(
        TaskDefinition(name="keyed_task", fn=gates.gated, concurrency_key="the-task", concurrency_limit=2)
    )
    built = Engine.assemble(
        repo=InMemoryJobRepository(),
        registry=registry,
        runner=AsyncioRunner(threads=2),
        bus=InProcessEventBus(),
        clock=FakeClock(),
        ids=CountingIds(),
        settings=EngineSettings(max_concurrent_tasks=8),
    )
    await built.start()
    yield built
    for gate in gates.gates.values():
        gate.set()
    await built.stop(grace=5)


async def submit(engine: Engine, name: str, key: str | None, limit: int | None = None) -> str:
    signature = Signature(task="gated", args=[name, key or "none"], concurrency_key=key, concurrency_limit=limit)
    return (await engine.jobs.submit(signature)).id


class TestConcurrencyKeys:
    async def test_one_at_a_time_in_order_others_unhindered(self, engine: Engine, gates: Gates) -> None:
        keyed = [await submit(engine, f"p{i}", "project:42") for i in range(3)]
        free = await submit(engine, "free", None)
        await until(lambda: {"p0", "free"} <= set(gates.started), "p0 and the unkeyed job run")
        assert gates.running == {"project:42": 1, "none": 1}
        for name in ("p0", "p1", "p2"):  # each stored outcome starts the next one, with no other wake-up
            gates.gate(name).set()
        for job_id in keyed:
            await engine.jobs.wait(job_id, timeout=5)
        assert [name for name in gates.started if name.startswith("p")] == ["p0", "p1", "p2"]
        assert gates.peak["project:42"] == 1
        gates.gate("free").set()
        await engine.jobs.wait(free, timeout=5)

    async def test_a_limit_above_one(self, engine: Engine, gates: Gates) -> None:
        keyed = [await submit(engine, f"k{i}", "pool", 2) for i in range(4)]
        await until(lambda: gates.started == ["k0", "k1"], "two run")
        stored = await engine.repo.get(keyed[2])
        assert stored is not None and stored.state == JobState.PENDING
        for name in ("k0", "k1", "k2", "k3"):
            gates.gate(name).set()
        for job_id in keyed:
            await engine.jobs.wait(job_id, timeout=5)
        assert gates.peak["pool"] == 2

    async def test_the_tasks_own_key_applies_to_every_call(self, engine: Engine, gates: Gates) -> None:
        jobs = [(await engine.jobs.submit(Signature(task="keyed_task", args=[f"t{i}", "task"]))).id for i in range(3)]
        stored = await engine.repo.get(jobs[0])
        assert stored is not None and stored.concurrency == ("the-task", 2)
        await until(lambda: len(gates.started) == 2, "two run")
        third = await engine.repo.get(jobs[2])
        assert third is not None and third.state == JobState.PENDING
        for name in ("t0", "t1", "t2"):
            gates.gate(name).set()
        for job_id in jobs:
            await engine.jobs.wait(job_id, timeout=5)
        assert gates.peak["task"] == 2

    async def test_a_replaced_job_holds_its_key_until_its_workflow_ends(self, engine: Engine, gates: Gates) -> None:
        first = await engine.jobs.submit(Signature(task="orchestrate", args=["w1", "wf"], concurrency_key="project:7"))
        await until(lambda: gates.started == ["w1"], "the first workflow's step runs")
        second = await engine.jobs.submit(Signature(task="orchestrate", args=["w2", "wf"], concurrency_key="project:7"))
        stored = await engine.repo.get(second.id)
        assert stored is not None and stored.state == JobState.PENDING, "the key is held by the replaced job"
        gates.gate("w1").set()
        await engine.jobs.wait(first.id, timeout=5)
        await until(lambda: gates.started == ["w1", "w2"], "the second workflow runs once the first ended")
        gates.gate("w2").set()
        await engine.jobs.wait(second.id, timeout=5)
        assert gates.peak["wf"] == 1
