"""Port: what lives as long as the engine runs and must hear when it starts and stops."""

from __future__ import annotations

from typing import Protocol


class EngineHooks(Protocol):
    """Told when the engine has started, and when it has stopped running jobs (before its runner and
    its storage close): e.g. the entry points' bridge for callers on plain threads, which must release
    the threads waiting for a job that will not finish now."""

    def engine_started(self) -> None: ...

    def engine_stopped(self) -> None: ...
