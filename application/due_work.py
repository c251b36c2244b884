"""What an engine's dispatcher knows of the queued jobs in storage, so that it claims and reads there only
when due work may wait: each claim and each read is a round trip on PostgreSQL.

Due work reaches storage in two ways. Announced (another engine queued it, a retry or a recovery was
stored, the engine is told to look): the queue is *behind* until a claim finds it drained, and then the
earliest due time is read, since what the others stored is known only there. Stored by this engine
itself: a job due now makes the queue behind, one due later only moves the time to wake up; a claim
that finds the queue drained then needs no read, since the engine already knows every due time it
stored. The earliest due time is read again too once it has passed (the jobs due then were claimed: the
next one is not known). A read may begin before a job this engine stores meanwhile is committed: such
jobs are noted, and the read cannot erase them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable


class DueWork:
    """Whether due jobs may wait in storage, unclaimed, and when the next one is due. Written on the loop;
    :meth:`may_be_due` is read from any thread (submitters deciding whether to hand a job over)."""

    def __init__(self) -> None:
        self.behind = True
        """Due jobs may wait in storage: announced work, not yet found drained by a claim."""
        self.next_due: float | None = None
        """The earliest due time of the queued jobs in storage, as last known."""
        self.unknown = True
        """Jobs may be in storage whose due times this engine does not know (announced, or stored before it
        started): the next drained queue reads the earliest due time."""
        self._noted: float | None = None  # the earliest due time stored here since the last read began
        self._stored_due = False  # a job due now was stored here since the last claim began

    def may_be_due(self, now: float) -> bool:
        return self.behind or (self.next_due is not None and self.next_due <= now)

    def announced(self) -> None:
        self.behind = True
        self.unknown = True

    def claiming(self) -> None:
        """A claim begins: a job due now that this engine stores from here on may be missing from what the
        claim finds (committed after it looked), so a claim that finds the queue drained leaves it behind."""
        self._stored_due = False

    def stored(self, due_times: list[float], now: float) -> bool:
        """This engine stored queued jobs due at ``due_times``: True when one is due now (claim it);
        the earliest due later is noted as a time to wake up."""
        due_now = any(due <= now for due in due_times)
        later = [due for due in due_times if due > now]
        if due_now:
            self.behind = True
            self._stored_due = True
        if later:
            earliest = min(later)
            if self.next_due is None or earliest < self.next_due:
                self.next_due = earliest
            if self._noted is None or earliest < self._noted:
                self._noted = earliest
        return due_now

    async def drained(self, read_next_due: Callable[[], Awaitable[float | None]], now: float) -> None:
        """A claim found no more due jobs (or the dispatcher starts): the earliest due time is read when
        it may be unknown."""
        self.behind = self._stored_due
        if not self.unknown and (self.next_due is None or self.next_due > now):
            return
        self.unknown = False
        self._noted = None
        read = await read_next_due()
        noted = self._noted
        self.next_due = read if noted is None or (read is not None and read <= noted) else noted
