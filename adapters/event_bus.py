"""The in-process event bus: fans events out to asyncio subscribers on the engine's loop."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable

from application.events import Event
from application.ports import EventBus, Subscription

log = logging.getLogger(__name__)


class QueueSubscription(Subscription):
    """A bounded buffer of events for one subscriber; the oldest are dropped when it overflows."""

    def __init__(self, bus: InProcessEventBus, key: str | None, maxlen: int) -> None:
        self._bus = bus
        self.key = key
        self._events: deque[Event] = deque(maxlen=maxlen)
        self._ready = asyncio.Event()
        self._closed = False

    def push(self, event: Event) -> None:
        self._events.append(event)
        self._ready.set()

    async def next(self, timeout: float | None = None) -> Event | None:
        while not self._events:
            if self._closed:
                return None
            self._ready.clear()
            try:
                await asyncio.wait_for(self._ready.wait(), timeout)
            except TimeoutError:
                return None
        return self._events.popleft()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._ready.set()
            self._bus.unsubscribe(self)

    def __aiter__(self) -> QueueSubscription:
        return self

    async def __anext__(self) -> Event:
        event = await self.next()
        if event is None:
            raise StopAsyncIteration
        return event


class InProcessEventBus(EventBus):
    """Subscribers by key (a job id, a workflow id, or None for all); publishing is O(subscribers of the event)."""

    def __init__(self, buffer: int = 1000) -> None:
        self._buffer = buffer
        self._subscribers: dict[str | None, set[QueueSubscription]] = {}
        self._listeners: list[Callable[[Event], None]] = []
        self._relayed_listeners: list[Callable[[Event], None]] = []

    def add_listener(self, listener: Callable[[Event], None], *, relayed: bool = False) -> None:
        self._listeners.append(listener)
        if relayed:
            self._relayed_listeners.append(listener)

    def publish(self, event: Event) -> None:
        self._fan_out(event, self._listeners)

    def deliver(self, event: Event) -> None:
        self._fan_out(event, self._relayed_listeners)

    def _fan_out(self, event: Event, listeners: list[Callable[[Event], None]]) -> None:
        for listener in listeners:
            try:
                listener(event)
            except Exception:
                log.exception("event listener %r failed", listener)
        for key in {event.id, event.workflow_id, event.root_id, None}:
            for subscription in self._subscribers.get(key, ()):
                subscription.push(event)

    def subscribe(self, key: str | None = None) -> QueueSubscription:
        subscription = QueueSubscription(self, key, self._buffer)
        self._subscribers.setdefault(key, set()).add(subscription)
        return subscription

    def unsubscribe(self, subscription: QueueSubscription) -> None:
        subscribers = self._subscribers.get(subscription.key)
        if subscribers is not None:
            subscribers.discard(subscription)
            if not subscribers:
                del self._subscribers[subscription.key]
