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
