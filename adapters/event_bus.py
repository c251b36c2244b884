"""The in-process event bus: fans events out to asyncio subscribers on the engine's loop.

Each event is numbered as it passes (``Event.seq``, one sequence for the whole bus) and the latest
:data:`RETAINED_EVENTS` of each of the :data:`RETAINED_KEYS` most recently active keys (job, workflow, root
workflow or project ids) are kept, so that an event stream that reconnects with ``Last-Event-ID`` gets what
it missed (``resume``) with no gap and no repeat. Beyond that retention, ``resume`` says so (None) and the
stream starts again from a snapshot.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections import OrderedDict, deque
from collections.abc import Callable

import msgspec

from application.events import Event
from application.ports import EventBus, Subscription

log = logging.getLogger(__name__)

RETAINED_EVENTS = 200
"""Events kept per key: a job or workflow stream resumes if it missed at most this many of them."""
RETAINED_KEYS = 2000
"""Keys whose events are kept: the least recently active one beyond this many is forgotten."""


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

    def __init__(
        self, buffer: int = 1000, *, retained_events: int = RETAINED_EVENTS, retained_keys: int = RETAINED_KEYS
    ) -> None:
        self._buffer = buffer
        self._subscribers: dict[str | None, set[QueueSubscription]] = {}
        self._listeners: list[Callable[[Event], None]] = []
        self._relayed_listeners: list[Callable[[Event], None]] = []
        self.epoch = secrets.token_hex(4)
        self._seq = 0
        self._retained_events = retained_events
        self._retained_keys = retained_keys
        self._recent: OrderedDict[str, deque[Event]] = OrderedDict()
        self._dropped: dict[str, int] = {}  # per retained key: the seq of the newest event of it no longer kept
        self._forgotten = 0  # the newest seq of the keys no longer retained at all

    @property
    def position(self) -> int:
        return self._seq

    def add_listener(self, listener: Callable[[Event], None], *, relayed: bool = False) -> None:
        self._listeners.append(listener)
        if relayed:
            self._relayed_listeners.append(listener)

    def publish(self, event: Event) -> None:
        self._fan_out(event, self._listeners)

    def deliver(self, event: Event) -> None:
        self._fan_out(event, self._relayed_listeners)

    def _fan_out(self, event: Event, listeners: list[Callable[[Event], None]]) -> None:
        self._seq += 1
        event = msgspec.structs.replace(event, seq=self._seq)
        for listener in listeners:
            try:
                listener(event)
            except Exception:
                log.exception("event listener %r failed", listener)
        keys = {event.id, event.workflow_id, event.root_id} - {None}
        for key in keys:
            assert key is not None
            self._retain(key, event)
        for key in (*keys, None):
            for subscription in self._subscribers.get(key, ()):
                subscription.push(event)

    def _retain(self, key: str, event: Event) -> None:
        recent = self._recent.get(key)
        if recent is None:
            recent = self._recent[key] = deque()
            while len(self._recent) > self._retained_keys:
                old_key, old = self._recent.popitem(last=False)
                newest = old[-1].seq if old else self._dropped.get(old_key, 0)
                self._forgotten = max(self._forgotten, newest)
                self._dropped.pop(old_key, None)
        else:
            self._recent.move_to_end(key)
        if len(recent) >= self._retained_events:
            self._dropped[key] = recent.popleft().seq
        recent.append(event)

    def subscribe(self, key: str | None = None) -> QueueSubscription:
        subscription = QueueSubscription(self, key, self._buffer)
        self._subscribers.setdefault(key, set()).add(subscription)
        return subscription

    def resume(self, key: str, after: int) -> QueueSubscription | None:
        if not max(self._forgotten, self._dropped.get(key, 0)) <= after <= self._seq:
            return None
        subscription = self.subscribe(key)
        for event in self._recent.get(key, ()):
            if event.seq > after:
                subscription.push(event)
        return subscription

    def unsubscribe(self, subscription: QueueSubscription) -> None:
        subscribers = self._subscribers.get(subscription.key)
        if subscribers is not None:
            subscribers.discard(subscription)
            if not subscribers:
                del self._subscribers[subscription.key]
