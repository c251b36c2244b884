"""Claims by named queue: what a dispatcher asks of storage for its free slots, and what it reads as the next
due time, given the queues it serves and the slots each has left (:class:`~application.run_slots.QueueSlots`)."""

from __future__ import annotations

from application.ports import JobQueue
from application.run_slots import QueueSlots
from domain.job import Job


class QueueClaims:
    """Claims of up to ``free`` jobs from the served queues, each within its own slots; its ``queues`` are the
    dispatcher's (jobs claimed as they are stored take their queue's slot there too)."""

    def __init__(self, repo: JobQueue, queues: QueueSlots, *, owner: str, lease_seconds: float) -> None:
        self._repo = repo
        self.queues = queues
        self._owner = owner
        self._lease_seconds = lease_seconds

    async def claim(self, now: float, free: int) -> list[Job]:
        """Up to ``free`` due jobs, claimed; the queue slots they hold are taken, the others given back (also
        when the claim fails)."""
        room = self.queues.room(free)
        claimed: list[Job] = []
        try:
            claimed = await self._claim(now, free, room)
        finally:
            self.queues.settle(room, (job.queue for job in claimed), free)
        return claimed

    async def _claim(self, now: float, free: int, room: dict[str, int] | None) -> list[Job]:
        lease_until = now + self._lease_seconds
        if room is None:  # every queue
            return await self._repo.claim(owner=self._owner, now=now, limit=free, lease_until=lease_until)
        if not any(room.values()):
            return []
        return await self._repo.claim(owner=self._owner, now=now, limit=free, lease_until=lease_until, queues=room)

    async def next_due_at(self) -> float | None:
        """The next due time among the queues a claim may take from now (saturated ones wait for a slot)."""
        queues = self.queues.open_queues()
        if queues is None:
            return await self._repo.next_due_at()
        return await self._repo.next_due_at(queues) if queues else None
