"""An in-memory index of queued jobs by priority and due time, so claiming never scans or queries.

Used by both repositories. It is exact because one engine owns its storage (SQLite's lock file):
every change of a job's state goes through that engine's repository, which keeps the index in step.
"""

from __future__ import annotations

import heapq
import itertools
from bisect import insort
from collections.abc import Callable


class DueIndex:
    """Queued job ids, taken highest priority first, then earliest due, then first queued.

    Each priority has its own heap of ``(due_at, order, id)``; an entry is live while ``_live`` maps
    its id to the same ``(priority, due_at, order)`` (updates and removals leave stale entries that
    are dropped when they surface).
    """

    def __init__(self) -> None:
        self._live: dict[str, tuple[int, float, int]] = {}
        self._heaps: dict[int, list[tuple[float, int, str]]] = {}
        self._priorities: list[int] = []  # ascending; walked from the end
        self._order = itertools.count()

    def __len__(self) -> int:
        return len(self._live)

    def __contains__(self, job_id: object) -> bool:
        return job_id in self._live

    def start_order_after(self, order: int) -> None:
        """New entries are ordered after ``order`` (the largest order loaded from storage)."""
        self._order = itertools.count(order + 1)

    def put(self, job_id: str, priority: int, due_at: float, order: int | None = None) -> None:
        """Queue ``job_id`` (or move it, if its priority or due time changed)."""
        current = self._live.get(job_id)
        if current is not None and current[:2] == (priority, due_at):
            return
        entry_order = next(self._order) if order is None else order
        self._live[job_id] = (priority, due_at, entry_order)
        heap = self._heaps.get(priority)
        if heap is None:
            heap = self._heaps[priority] = []
            insort(self._priorities, priority)
        heapq.heappush(heap, (due_at, entry_order, job_id))

    def discard(self, job_id: str) -> None:
        self._live.pop(job_id, None)

    def key(self, job_id: str) -> tuple[int, float, int] | None:
        return self._live.get(job_id)

    def take_due(
        self, now: float, limit: int, refuse: Callable[[str, tuple[int, float, int]], bool] | None = None
    ) -> list[tuple[str, tuple[int, float, int]]]:
        """Remove and return up to ``limit`` jobs due at ``now``, in claim order, with their keys. A due job
        that ``refuse`` is true for is removed too, and not returned (its caller sets it aside)."""
        taken: list[tuple[str, tuple[int, float, int]]] = []
        for priority in reversed(list(self._priorities)):
            heap = self._heaps[priority]
            while heap and len(taken) < limit:
                due_at, order, job_id = heap[0]
                if self._live.get(job_id) != (priority, due_at, order):
                    heapq.heappop(heap)
                    continue
                if due_at > now:
                    break
                heapq.heappop(heap)
                entry = self._live.pop(job_id)
                if refuse is None or not refuse(job_id, entry):
                    taken.append((job_id, entry))
            if not heap:
                del self._heaps[priority]
                self._priorities.remove(priority)
            if len(taken) >= limit:
                break
        return taken

    def restore(self, taken: list[tuple[str, tuple[int, float, int]]]) -> None:
        """Put back jobs taken by :meth:`take_due` whose claim did not happen."""
        for job_id, (priority, due_at, order) in taken:
            if job_id not in self._live:
                self.put(job_id, priority, due_at, order)

    def next_due(self) -> float | None:
        """The earliest due time of any queued job, or None."""
        earliest: float | None = None
        for priority in list(self._priorities):
            heap = self._heaps[priority]
            while heap and self._live.get(heap[0][2]) != (priority, heap[0][0], heap[0][1]):
                heapq.heappop(heap)
            if not heap:
                del self._heaps[priority]
                self._priorities.remove(priority)
            elif earliest is None or heap[0][0] < earliest:
                earliest = heap[0][0]
        return earliest
