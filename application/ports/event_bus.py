"""Port: in-process publish/subscribe of job and workflow events (and of those other engines relayed)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from application.events import Event


class Subscription(Protocol):
    """Events for one key, in publish order, from the moment of subscribing."""

    async def next(self, timeout: float | None = None) -> Event | None:
        """The next event, or None when ``timeout`` seconds pass first or the subscription is closed."""
        ...

    def close(self) -> None: ...


class EventBus(Protocol):
    """Fan-out of events to subscribers. Publishing never blocks and never fails the publisher.

    An event is delivered to subscribers of its id, of its workflow id, of its root workflow id (so a
    workflow's subscribers see the steps of workflows that replaced its jobs), and of everything (None).
    A subscriber that falls far behind loses its oldest events, never the publisher's time.
    """

    def publish(self, event: Event) -> None:
        """An event of this engine: to its subscribers and to every listener."""
        ...

    def deliver(self, event: Event) -> None:
        """An event another engine published (see ``PeerLink``): to subscribers, and only to the listeners
        added with ``relayed=True`` (this engine's counters, and its relay to the others, never see it)."""
        ...

    epoch: str
    """Names this bus's numbering of events (``Event.seq``): a new one each time the process starts, so an
    event id from before a restart is never taken for one of now."""

    @property
    def position(self) -> int:
        """The ``seq`` of the latest event published or delivered (0 before the first)."""
        ...

    def subscribe(self, key: str | None = None) -> Subscription: ...

    def resume(self, key: str, after: int) -> Subscription | None:
        """A subscription to ``key`` that first gives every event of it with ``seq`` over ``after``, in order,
        then the new ones; None when the bus does not retain them all (or ``after`` is in the future).
        ``after=position`` always subscribes, and has the bus keep ``key``'s events from then on (for the
        resumes of the streams that follow it)."""
        ...

    def add_listener(self, listener: Callable[[Event], None], *, relayed: bool = False) -> None:
        """Call ``listener`` synchronously with every event this engine publishes (for counters that must
        see them all); with ``relayed``, also with those other engines published (for waiters)."""
        ...
