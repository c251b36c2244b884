"""The dispatcher with named queues (``GEEKBLOG_QUEUES``): it claims only from the queues it serves, runs at
most a queue's own concurrency of its jobs at once (through claims and the hand-over of new jobs alike), and
claims a waiting job of a full queue as soon as one of its slots frees."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from adapters.asyncio_runner import AsyncioRunner
from adapters.event_bus import InProcessEventBus
from adapters.memory_job_repository import InMemoryJobRepository
from application.engine import Engine, EngineSettings
from application.registry import TaskDefinition, TaskRegistry
from application.run_slots import QueueSlots
from domain.canvas import Signature
from domain.states import JobState
from tests.unit.fakes import CountingIds, FakeClock


class Gates:
    """Jobs of ``gated`` run until their name's gate opens; ``running`` and ``peak`` per queue tag."""

    def __init__(self) -> None:
        self.gates: dict[str, asyncio.Event] = {}
        self.running: dict[str, int] = {}
        self.peak: dict[str, int] = {}
        self.started: list[str] = []

    def gate(self, name: str) -> asyncio.Event:
        return self.gates.setdefault(name, asyncio.Event())

    async def gated(self, name: str, tag: str) -> str:
        self.started.append(name)
        self.running[tag] = self.running.get(tag, 0) + 1
        self.peak[tag] = max(self.peak.get(tag, 0), self.running[tag])
        try:
            await self.gate(name).wait()
        finally:
            self.running[tag] -= 1
        return name


async def until(condition: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting until {what}"
        await asyncio.sleep(0.005)


@pytest.fixture
def gates() -> Gates:
    return Gates()


@pytest.fixture
async def engine(gates: Gates) -> AsyncIterator[Engine]:
    registry = TaskRegistry()
    registry.register(TaskDefinition(name="gated", fn=gates.gated))
    built = Engine.assemble(
        repo=InMemoryJobRepository(),
        registry=registry,
        runner=AsyncioRunner(threads=2),
        bus=InProcessEventBus(),
        clock=FakeClock(),
        ids=CountingIds(),
        settings=EngineSettings(max_concurrent_tasks=4, queues={"default": None, "ai": 1}),
    )
    await built.start()
    yield built
    for gate in gates.gates.values():
        gate.set()
    await built.stop(grace=5)


async def submit(engine: Engine, name: str, queue: str | None = None, **options: Any) -> str:
    tag = options.get("routing_key") or queue or "default"
    job = await engine.jobs.submit(Signature(task="gated", args=[name, tag], queue=queue, **options))
    return job.id


class TestServedQueues:
    async def test_a_queue_not_served_is_never_claimed(self, engine: Engine, gates: Gates) -> None:
        other = await submit(engine, "other", "reports")
        mine = await submit(engine, "mine")
        gates.gate("mine").set()
        await engine.jobs.wait(mine, timeout=5)
        job = await engine.repo.get(other)
        assert job is not None and job.state == JobState.PENDING and job.queue == "reports"
        assert gates.started == ["mine"]

    async def test_a_routing_key_names_the_queue(self, engine: Engine, gates: Gates) -> None:
        routed = await submit(engine, "routed", routing_key="reports")
        served = await submit(engine, "served", routing_key="ai")
        gates.gate("served").set()
        await engine.jobs.wait(served, timeout=5)
        job = await engine.repo.get(routed)
        assert job is not None and job.state == JobState.PENDING


class TestQueueConcurrency:
    async def test_at_most_the_queues_concurrency_run_the_others_wait_in_order(
        self, engine: Engine, gates: Gates
    ) -> None:
        ai = [await submit(engine, f"a{i}", "ai") for i in range(3)]
        plain = [await submit(engine, f"d{i}") for i in range(2)]
        await until(lambda: gates.started.count("a0") == 1 and {"d0", "d1"} <= set(gates.started), "a0, d0, d1 run")
        assert gates.running == {"ai": 1, "default": 2}, "the other two ai jobs wait though engine slots are free"
        for name in ("a0", "a1", "a2"):  # each freed ai slot starts the next ai job, with no other wake-up
            gates.gate(name).set()
        for job_id in ai:
            await engine.jobs.wait(job_id, timeout=5)
        assert [name for name in gates.started if name.startswith("a")] == ["a0", "a1", "a2"]
        assert gates.peak["ai"] == 1
        for name in ("d0", "d1"):
            gates.gate(name).set()
        for job_id in plain:
            await engine.jobs.wait(job_id, timeout=5)

    async def test_jobs_claimed_as_they_are_stored_respect_it_too(self, engine: Engine, gates: Gates) -> None:
        first = await submit(engine, "first", "ai")  # handed over in its own commit: the ai slot is free
        await until(lambda: gates.started == ["first"], "first runs")
        second = await submit(engine, "second", "ai")
        stored = await engine.repo.get(second)
        assert stored is not None and stored.state == JobState.PENDING, "the ai slot is taken: it waits queued"
        assert engine.dispatcher.queues.running("ai") == 1
        gates.gate("first").set()
        await engine.jobs.wait(first, timeout=5)
        await until(lambda: gates.started == ["first", "second"], "second runs once first is done")
        gates.gate("second").set()
        await engine.jobs.wait(second, timeout=5)
        assert gates.peak["ai"] == 1
        assert engine.dispatcher.queues.running("ai") == 0 and engine.dispatcher.active_jobs == 0


class TestQueueSlots:
    def test_every_queue_when_none_given(self) -> None:
        slots = QueueSlots(None)
        assert slots.serves("anything") and slots.room(3) is None and slots.open_queues() is None
        assert slots.take_one("anything") and not slots.give_one("anything")

    def test_room_settle_and_saturation(self) -> None:
        slots = QueueSlots({"ai": 2, "default": None})
        room = slots.room(5)
        assert room == {"ai": 2, "default": 5}
        slots.settle(room, ["ai", "ai", "default"], 5)
        assert slots.running("ai") == 2 and slots.saturated == {"ai"} and slots.open_queues() == ["default"]
        assert not slots.take_one("ai") and not slots.take_one("reports")
        assert slots.give_one("ai") is True, "a saturated queue's freed slot calls for a claim"
        assert slots.give_one("ai") is False and slots.running("ai") == 0
        room = slots.room(1)
        slots.settle(room, [], 1)
        assert slots.running("ai") == 0 and not slots.saturated, "room not above the claim's limit: not saturated"
