"""The event bus numbers events and keeps the latest of each key a stream follows, so that the stream can
resume (issue 15)."""

from __future__ import annotations

import pytest

from adapters.event_bus import InProcessEventBus, QueueSubscription
from application.events import Event


def event(key: str, state: str = "PENDING", *, workflow_id: str | None = None) -> Event:
    return Event(kind="job", id=key, state=state, at=1.0, workflow_id=workflow_id)


async def drained(subscription: QueueSubscription) -> list[int]:
    seqs = []
    while (next_event := await subscription.next(0)) is not None:
        seqs.append(next_event.seq)
    return seqs


def watch(bus: InProcessEventBus, key: str) -> QueueSubscription:
    """What a new stream does: subscribe from the bus's position, which has the bus keep the key's events."""
    subscription = bus.resume(key, bus.position)
    assert subscription is not None
    return subscription


async def test_events_are_numbered_in_publish_order_and_delivered_numbered() -> None:
    bus = InProcessEventBus()
    everything = bus.subscribe()
    bus.publish(event("a"))
    bus.deliver(event("b"))
    bus.publish(event("a", "STARTED"))
    assert await drained(everything) == [1, 2, 3] and bus.position == 3


@pytest.mark.parametrize("after", [0, 1, 2, 3, 4])
async def test_a_resume_gives_exactly_the_keys_events_after_the_point_then_new_ones(after: int) -> None:
    bus = InProcessEventBus()
    watch(bus, "a").close()
    watch(bus, "w").close()
    for _ in range(4):
        bus.publish(event("a", workflow_id="w"))  # seq 1, 3, 5, 7 for "a" and "w"
        bus.publish(event("other"))  # seq 2, 4, 6, 8
    resumed = bus.resume("a", after)
    assert resumed is not None
    bus.publish(event("a", "SUCCESS", workflow_id="w"))  # seq 9
    assert await drained(resumed) == [seq for seq in (1, 3, 5, 7, 9) if seq > after]
    by_workflow = bus.resume("w", after)
    assert by_workflow is not None and await drained(by_workflow) == [seq for seq in (1, 3, 5, 7, 9) if seq > after]


async def test_only_the_keys_streams_follow_keep_events() -> None:
    bus = InProcessEventBus()
    bus.publish(event("a"))  # 1, kept by no one
    assert bus.resume("a", 0) is None  # it may have been missed
    watch(bus, "a").close()
    bus.publish(event("a"))  # 2, kept
    resumed = bus.resume("a", 1)
    assert resumed is not None and await drained(resumed) == [2]
    assert bus.resume("a", 0) is None  # 1 was never kept


async def test_beyond_the_retention_of_a_key_there_is_no_resume() -> None:
    bus = InProcessEventBus(retained_events=3)
    watch(bus, "a").close()
    for _ in range(5):
        bus.publish(event("a"))  # 1..5: 3, 4, 5 kept
    assert bus.resume("a", 1) is None  # 2 is gone
    resumed = bus.resume("a", 2)
    assert resumed is not None and await drained(resumed) == [3, 4, 5]


async def test_the_least_recent_key_beyond_the_retention_is_forgotten_and_a_future_point_has_no_resume() -> None:
    bus = InProcessEventBus(retained_keys=2)
    for key in ("a", "b"):
        watch(bus, key).close()
    bus.publish(event("a"))  # 1
    bus.publish(event("b"))  # 2
    watch(bus, "c").close()  # "a", the least recent, is forgotten
    bus.publish(event("c"))  # 3
    assert bus.resume("a", 0) is None and bus.resume("a", 1) is None
    resumed = bus.resume("b", 1)
    assert resumed is not None and await drained(resumed) == [2]
    assert bus.resume("c", 4) is None  # not published yet: an id of another life of the bus


def test_each_bus_has_its_own_epoch() -> None:
    assert InProcessEventBus().epoch != InProcessEventBus().epoch
