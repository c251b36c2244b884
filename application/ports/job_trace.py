"""Port: what is told about each job the dispatcher runs (the service's log lines of each job)."""

from __future__ import annotations

from typing import Any, Protocol

from application.execution import ReplaceRequested
from domain.job import Job


class JobTrace(Protocol):
    """Told what each job does as the dispatcher runs it (the service's log lines of each job: see
    ``entrypoints.compat.trace``). Called on the loop."""

    def received(self, job: Job) -> None:
        """``job`` was taken to run (it may still be revoked unrun: its ``expires`` passed)."""

    def finished(
        self,
        job: Job,
        outcome: Job | ReplaceRequested,
        *,
        value: Any = None,
        exc: BaseException | None = None,
        runtime: float = 0.0,
    ) -> None:
        """``job`` ran for ``runtime`` seconds: ``outcome`` is its next state (SUCCESS with ``value``;
        RETRY, FAILURE or, for a requeued rejection, PENDING, with ``exc`` the task's exception when
        there is one) or the replacement it asked for."""
