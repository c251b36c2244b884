"""Port: what the job service needs of a dispatcher to start new jobs without queueing them first."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from domain.job import Job

if TYPE_CHECKING:
    from application.workflows import Advance


class Starter(Protocol):
    """Starts new work as it is stored: due jobs are claimed in the very commit that stores them."""

    async def start_new(self, advance: Advance) -> None:
        """Commit ``advance`` (new work); due jobs may be claimed in that commit and started."""
        ...

    def claim_new(self, job: Job) -> Job | None:
        """``job`` claimed, for a submitter that stores the new job itself; None: store it queued."""
        ...

    def launch_claimed(self, started: Job) -> None:
        """On the loop: start a job claimed by :meth:`claim_new`, now committed."""
        ...

    def unclaim(self, job: Job) -> None:
        """``job``, claimed by :meth:`claim_new`, was not stored."""
        ...

    def revoking_unlaunched(self, job: Job) -> None:
        """A STARTED job not running here is being revoked: do not launch it if it is still to be."""
        ...

    def not_revoking(self, job: Job) -> None:
        """That revocation was not stored."""
        ...
