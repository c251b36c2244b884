"""Fakes for the ports that have no production in-memory adapter: a settable clock, counted ids, and a link
to other engines that records what it is told."""

from __future__ import annotations

import itertools

from application.events import Event
from application.ports import Clock, IdSource
from application.ports.peers import PeerInbox, PeerLink


class FakeClock(Clock):
    """Time stands still until a test moves it."""

    def __init__(self, now: float = 1_000.0) -> None:
        self.current = now

    def now(self) -> float:
        return self.current

    def advance(self, seconds: float) -> None:
        self.current += seconds


class CountingIds(IdSource):
    """Readable ids: id-1, id-2, ..."""

    def __init__(self) -> None:
        self._counter = itertools.count(1)

    def new_id(self) -> str:
        return f"id-{next(self._counter)}"


class RecordingLink(PeerLink):
    """A link to other engines that records what this engine sends (``relayed``, ``queued``, ``asked``);
    a cancel asked of ``owner`` gets ``answers[owner]`` (False when absent: it does not run there, or no
    answer came). :attr:`inbox` is the engine's side once opened, to play the other engines."""

    def __init__(self, *, shared: bool = True, answers: dict[str, bool] | None = None) -> None:
        self._shared = shared
        self.answers = answers or {}
        self.inbox: PeerInbox | None = None
        self.name: str | None = None
        self.closed = False
        self.relayed: list[Event] = []
        self.queued = 0
        self.asked: list[tuple[str, str]] = []

    @property
    def shared(self) -> bool:
        return self._shared

    async def open(self, inbox: PeerInbox, *, name: str) -> None:
        self.inbox, self.name = inbox, name

    async def close(self) -> None:
        self.closed = True

    def work_queued(self) -> None:
        self.queued += 1

    def relay(self, event: Event) -> None:
        self.relayed.append(event)

    async def cancel_on(self, owner: str, job_id: str, *, timeout: float) -> bool:
        self.asked.append((owner, job_id))
        return self.answers.get(owner, False)
