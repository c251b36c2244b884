"""The in-process event bus: fans events out to asyncio subscribers on the engine's loop.

Each event is numbered as it passes (``Event.seq``, one sequence for the whole bus). The keys event
streams follow (job, workflow or project ids, given to ``resume``) are *watched*: the latest
:data:`RETAINED_EVENTS` events of each of the :data:`RETAINED_KEYS` most recently watched or active of
them are kept, so that a stream that reconnects with ``Last-Event-ID`` gets what it missed with no gap and
no repeat. Only watched keys keep events (a result can be a MiB: the memory is bounded by the streams
opened, not by the jobs run). Beyond that retention ``resume`` says so (None) and the stream starts again
from a snapshot.
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
RETAINED_KEYS = 1000
"""Watched keys whose events are kept: the least recently watched or active one beyond this many is forgotten."""


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
        self._dropped: dict[str, int] = {}  # per watched key: the newest seq of its events that may not be kept

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
        keys = [key for key in {event.id, event.workflow_id, event.root_id} if key is not None]
        for key in keys:
            recent = self._recent.get(key)
            if recent is not None:
                self._recent.move_to_end(key)
                if len(recent) >= self._retained_events:
                    self._dropped[key] = recent.popleft().seq
                recent.append(event)
        for target in (*keys, None):
            for subscription in self._subscribers.get(target, ()):
                subscription.push(event)

    def _watch(self, key: str) -> None:
        """Keep ``key``'s events from now on: none published before is kept."""
        self._recent[key] = deque()
        self._dropped[key] = self._seq
        while len(self._recent) > self._retained_keys:
            old_key, _ = self._recent.popitem(last=False)
            del self._dropped[old_key]

    def subscribe(self, key: str | None = None) -> QueueSubscription:
        subscription = QueueSubscription(self, key, self._buffer)
        self._subscribers.setdefault(key, set()).add(subscription)
        return subscription

    def resume(self, key: str, after: int) -> QueueSubscription | None:
        recent = self._recent.get(key)
        if recent is None:
            if after != self._seq:  # not watched: what was published for it since is not known
                return None
            self._watch(key)
            recent = self._recent[key]
        elif not self._dropped[key] <= after <= self._seq:
            return None
        else:
            self._recent.move_to_end(key)
        subscription = self.subscribe(key)
        for event in recent:
            if event.seq > after:
                subscription.push(event)
        return subscription

    def unsubscribe(self, subscription: QueueSubscription) -> None:
        subscribers = self._subscribers.get(subscription.key)
        if subscribers is not None:
            subscribers.discard(subscription)
            if not subscribers:
                del self._subscribers[subscription.key]
