"""RunSlots: the dispatcher's slots, taken and given back from any thread, resized while held."""

from __future__ import annotations

import threading

import pytest

from application.run_slots import RunSlots


def test_takes_what_is_free_and_gets_it_back() -> None:
    slots = RunSlots(3)
    assert slots.take(2) == 2
    assert slots.take(5) == 1
    assert slots.take(1) == 0
    assert (slots.free, slots.taken) == (0, 3)
    slots.give(2)
    assert (slots.free, slots.taken) == (2, 1)


def test_a_shrink_while_slots_are_held_takes_effect_as_they_come_back() -> None:
    slots = RunSlots(10)
    assert slots.take(3) == 3
    slots.resize(1)
    assert (slots.free, slots.taken) == (0, 3)
    slots.give(2)
    assert (slots.free, slots.taken) == (0, 1)
    slots.give()
    assert (slots.free, slots.taken) == (1, 0)
    slots.resize(4)
    assert (slots.free, slots.taken) == (4, 0)


def test_a_grow_cancels_what_a_shrink_still_owed() -> None:
    slots = RunSlots(4)
    slots.take(4)
    slots.resize(2)
    slots.resize(3)
    assert slots.taken == 4
    slots.give(4)
    assert (slots.free, slots.taken) == (3, 0)


def test_never_more_than_its_size_are_taken_by_racing_threads() -> None:
    slots = RunSlots(5)
    taken: list[int] = []
    start = threading.Barrier(8)

    def grab() -> None:
        start.wait()
        for _ in range(2000):
            got = slots.take(1)
            taken.append(got)
            if got:
                slots.give()

    threads = [threading.Thread(target=grab) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert (slots.free, slots.taken) == (5, 0)
    assert sum(taken) > 0


def test_at_least_one_slot() -> None:
    with pytest.raises(ValueError, match="at least one"):
        RunSlots(0)
    with pytest.raises(ValueError, match="at least one"):
        RunSlots(2).resize(0)


async def test_a_dispatcher_stopped_while_it_claims_has_every_slot_free_again() -> None:
    """Stopping cancels the dispatcher's loop, maybe inside a claim: the slots it took for it come back."""
    import asyncio

    from adapters.asyncio_runner import AsyncioRunner
    from adapters.event_bus import InProcessEventBus
    from adapters.memory_job_repository import InMemoryJobRepository
    from application.dispatcher import Dispatcher
    from application.registry import TaskRegistry
    from application.workflows import WorkflowEngine
    from tests.unit.fakes import CountingIds, FakeClock

    repo, clock, ids, bus = InMemoryJobRepository(), FakeClock(), CountingIds(), InProcessEventBus()
    claiming = asyncio.Event()
    never = asyncio.Event()

    async def slow_claim(**_: object) -> list[object]:
        claiming.set()
        await never.wait()
        return []

    repo.claim = slow_claim  # type: ignore[method-assign,assignment]
    registry = TaskRegistry()
    dispatcher = Dispatcher(
        repo=repo,
        runner=AsyncioRunner(threads=1),
        registry=registry,
        workflows=WorkflowEngine(repo, registry, clock, ids, bus),
        clock=clock,
        bus=bus,
        owner="me",
        max_concurrent=3,
    )
    await dispatcher.start(recover_all_leases=True)
    dispatcher.wake()  # work announced: the loop claims (storage found empty at start is not claimed from)
    await asyncio.wait_for(claiming.wait(), 5)
    await dispatcher.stop()
    assert dispatcher.reserved_slots == 0 and dispatcher.max_concurrent == 3
    assert dispatcher._slots.free == 3
