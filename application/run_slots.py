"""The engine's run slots, shared by the dispatcher's claims and submitters that claim as they store.

A slot is taken before a job is claimed (from the queue, or in the very commit that stores a new job)
and given back once the job is no longer running. Slots are tokens in a deque: taking one (``pop``)
and giving one back (``append``) are single atomic operations of the deque, so a submitter that
stores its job on another thread than the loop's can claim a slot without any lock, and never more
than ``size`` jobs hold one at once.
"""

from __future__ import annotations

import collections
import itertools
from collections.abc import Iterable, Mapping


class RunSlots:
    """``size`` slots; :meth:`take` as many as are free (up to a number), :meth:`give` them back."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError("there must be at least one slot")
        self.size = size
        self._free: collections.deque[None] = collections.deque(itertools.repeat(None, size))
        self._owed: collections.deque[None] = collections.deque()  # held slots a shrink removed

    @property
    def free(self) -> int:
        return len(self._free)

    @property
    def taken(self) -> int:
        return self.size - len(self._free) + len(self._owed)

    def take(self, wanted: int) -> int:
        """Take up to ``wanted`` free slots; how many were taken."""
        taken = 0
        while taken < wanted:
            try:
                self._free.pop()
            except IndexError:
                break
            taken += 1
        return taken

    def give(self, count: int = 1) -> None:
        """Give back ``count`` slots taken before."""
        for _ in range(count):
            try:
                self._owed.pop()  # a slot that a shrink removed while it was held: it goes now
            except IndexError:
                self._free.append(None)

    def resize(self, size: int) -> None:
        """Change the number of slots; slots removed while held go as they are given back."""
        if size < 1:
            raise ValueError("there must be at least one slot")
        for _ in range(size - self.size):
            self.give()
        for _ in range(self.size - size):
            try:
                self._free.pop()
            except IndexError:
                self._owed.append(None)
        self.size = size


class QueueSlots:
    """The named queues an engine serves and, for those given a concurrency, their own slots within the
    engine's total: a job of such a queue holds one of those as well as one of the engine's.

    ``saturated`` are capped queues whose last claim filled them: due jobs may wait there unclaimed (the
    dispatcher's next-due reads leave them out), so a slot of theirs given back calls for a claim.
    """

    def __init__(self, queues: Mapping[str, int | None] | None) -> None:
        self.served: frozenset[str] | None = None if queues is None else frozenset(queues)
        """The queues served; None: every queue."""
        self.limits: dict[str, int | None] = {} if queues is None else dict(queues)
        self._slots = {name: RunSlots(size) for name, size in self.limits.items() if size is not None}
        self.saturated: set[str] = set()

    def serves(self, queue: str) -> bool:
        return self.served is None or queue in self.served

    def running(self, queue: str) -> int | None:
        """Slots of a capped queue held now; None for a queue without its own limit."""
        slots = self._slots.get(queue)
        return None if slots is None else slots.taken

    def take_one(self, queue: str) -> bool:
        """A slot of ``queue`` for one job (always, for a served queue without a limit). Any thread."""
        if not self.serves(queue):
            return False
        slots = self._slots.get(queue)
        return slots is None or slots.take(1) == 1

    def give_one(self, queue: str) -> bool:
        """Give back a slot of ``queue``; True when that queue was saturated (claim again)."""
        slots = self._slots.get(queue)
        if slots is None:
            return False
        was_saturated = queue in self.saturated
        self.saturated.discard(queue)
        slots.give()
        return was_saturated

    def room(self, free: int) -> dict[str, int] | None:
        """For a claim of up to ``free`` jobs: how many each served queue may give, its slots taken (None:
        any queue, as many as ``free``). Settle with :meth:`settle`."""
        if self.served is None:
            return None
        return {name: free if (slots := self._slots.get(name)) is None else slots.take(free) for name in self.served}

    def settle(self, room: dict[str, int] | None, claimed: Iterable[str], free: int) -> None:
        """The claim given ``room`` took jobs of the ``claimed`` queues: give back the slots it did not use,
        and note the capped queues it filled below ``free`` as saturated."""
        if room is None:
            return
        used: dict[str, int] = {}
        for queue in claimed:
            used[queue] = used.get(queue, 0) + 1
        for name, slots in self._slots.items():
            if name not in room:
                continue
            took = used.get(name, 0)
            slots.give(room[name] - took)
            if room[name] < free and took >= room[name]:
                self.saturated.add(name)
            else:
                self.saturated.discard(name)

    def open_queues(self) -> list[str] | None:
        """The served queues a claim may find due work in now (None: every queue)."""
        if self.served is None:
            return None
        return sorted(self.served - self.saturated)
