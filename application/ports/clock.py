"""Port: the current time, so tests can control it."""

from __future__ import annotations

from typing import Protocol


class Clock(Protocol):
    """Wall-clock time in seconds since the epoch (what ETAs and timestamps are stored in)."""

    def now(self) -> float: ...
