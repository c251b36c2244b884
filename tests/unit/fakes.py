"""Fakes for the ports that have no production in-memory adapter: a settable clock, counted ids."""

from __future__ import annotations

import itertools

from application.ports import Clock, IdSource


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
