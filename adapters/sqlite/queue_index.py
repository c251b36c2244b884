"""The SQLite engine's in-memory view of its queued jobs by named queue, and of the concurrency keys its
STARTED jobs hold, so a claim takes due jobs of the queues it serves, within each key's limit, with no query.

Exact because one engine owns its file (SQLite's lock file): every change of a job's state goes through
that engine's writer, which keeps this in step (``SqliteWriter._note_queue_changes``).
"""

from __future__ import annotations

import itertools
from collections.abc import Collection, Mapping

from adapters.sqlite.due_index import DueIndex

Entry = tuple[int, float, int]
"""A queued job's place: (priority, due_at, order)."""
Taken = list[tuple[str, Entry, str]]
"""Jobs taken by :meth:`QueueIndexes.take_due`: id, place and queue."""
Control = tuple[str, int]
"""A job's concurrency key and limit."""
Rate = tuple[str, float]
"""A job's task and the seconds between two starts of that task's jobs (its rate limit)."""


class QueueIndexes:
    """A :class:`DueIndex` per named queue, ordered across queues by one counter, so a claim from several
    queues takes them in the same order a single index would (highest priority, earliest due, first queued).

    A due job whose concurrency key is full (as many jobs hold it as its limit allows) is *parked* by the
    claim that meets it: out of the indexes, so next-due reads do not see it, until a job holding that key
    lets it go. A due job whose task's rate limit allows no start yet is parked until that time, which is
    then its next-due time.
    """

    def __init__(self) -> None:
        self._indexes: dict[str, DueIndex] = {}
        self._queue_of: dict[str, str] = {}  # every queued job (parked ones too) -> its queue
        self._order = itertools.count()
        self._controls: dict[str, Control] = {}  # jobs with a concurrency key, until they finish
        self._holding: dict[str, set[str]] = {}  # key -> STARTED jobs (and jobs being claimed) holding it
        self._held: dict[str, str] = {}  # job id -> the key it holds
        self._parked: dict[str, dict[str, Entry]] = {}  # key -> parked job id -> its place
        self._rates: dict[str, Rate] = {}  # queued jobs of rate-limited tasks
        self._next_start: dict[str, float] = {}  # rate-limited task -> when the next of its jobs may start
        self._rate_parked: dict[str, dict[str, Entry]] = {}  # task -> parked job id -> its place
        self._tokens: dict[str, tuple[str, float | None]] = {}  # job taken -> (task, next start before it)

    def __len__(self) -> int:
        return len(self._queue_of)

    def __contains__(self, job_id: object) -> bool:
        return job_id in self._queue_of

    def start_order_after(self, order: int) -> None:
        self._order = itertools.count(order + 1)

    def put(
        self,
        job_id: str,
        priority: int,
        due_at: float,
        queue: str,
        *,
        order: int | None = None,
        control: Control | None = None,
        rate: Rate | None = None,
    ) -> None:
        """Queue ``job_id`` in ``queue`` (or move it, if its queue, priority or due time changed)."""
        self.release(job_id)
        current = self._queue_of.get(job_id)
        if current is not None and (
            current != queue or self._controls.get(job_id) != control or self._rates.get(job_id) != rate
        ):
            self.discard(job_id)
        self._unpark_one(job_id)
        index = self._indexes.get(queue)
        if index is None:
            index = self._indexes[queue] = DueIndex()
        self._queue_of[job_id] = queue
        if control is not None:
            self._controls[job_id] = control
        self._tokens.pop(job_id, None)
        if rate is not None:
            self._rates[job_id] = rate
        place = index.key(job_id)
        if place is not None and place[:2] == (priority, due_at):
            return
        index.put(job_id, priority, due_at, next(self._order) if order is None else order)

    def discard(self, job_id: str) -> None:
        """``job_id`` is not queued (and holds no key) any more."""
        queue = self._queue_of.pop(job_id, None)
        if queue is not None:
            self._indexes[queue].discard(job_id)
        self._unpark_one(job_id)
        self._controls.pop(job_id, None)
        self._rates.pop(job_id, None)
        self._tokens.pop(job_id, None)
        self.release(job_id)

    def started(self, job_id: str, key: str) -> None:
        """``job_id`` was stored STARTED with concurrency key ``key`` (claimed, or waiting on a workflow that
        replaced it): it holds the key."""
        queue = self._queue_of.pop(job_id, None)
        if queue is not None:
            self._indexes[queue].discard(job_id)
        self._unpark_one(job_id)
        self.hold(job_id, key)

    def hold(self, job_id: str, key: str) -> None:
        """``job_id`` is STARTED with concurrency key ``key``."""
        if self._held.get(job_id) != key:
            self.release(job_id)
            self._held[job_id] = key
            self._holding.setdefault(key, set()).add(job_id)

    def release(self, job_id: str) -> None:
        """``job_id`` holds no concurrency key any more: the jobs parked on its key may be claimed again."""
        key = self._held.pop(job_id, None)
        if key is None:
            return
        holders = self._holding[key]
        holders.discard(job_id)
        if not holders:
            del self._holding[key]
        self._unpark(key)

    def holders(self, key: str) -> int:
        """How many jobs hold ``key`` now (STARTED, or being claimed)."""
        return len(self._holding.get(key, ()))

    def take_due(self, now: float, limit: int, queues: Mapping[str, int] | None = None) -> Taken:
        """Remove and return up to ``limit`` jobs due at ``now``, in claim order; ``queues``: only from these
        queues, at most ``queues[name]`` from each (None: from any). A job with a concurrency key is taken
        only while its key has room (those taken here counted) and then holds it, until :meth:`restore` or
        :meth:`discard`; the others met are parked."""
        wanted = {name: limit for name in self._indexes} if queues is None else queues
        self._unpark_rates(now)
        counted: dict[str, int] = {}
        started: set[str] = set()  # rate-limited tasks a job of which is taken here
        refused: list[tuple[str, Entry]] = []
        waiting: list[tuple[str, Entry]] = []

        def refuse(job_id: str, place: Entry) -> bool:
            control = self._controls.get(job_id)
            if control is not None and self.holders(control[0]) + counted.get(control[0], 0) >= control[1]:
                refused.append((job_id, place))
                return True
            rate = self._rates.get(job_id)
            if rate is not None and (rate[0] in started or self._next_start.get(rate[0], now) > now):
                waiting.append((job_id, place))
                return True
            if control is not None:
                counted[control[0]] = counted.get(control[0], 0) + 1
            if rate is not None:
                started.add(rate[0])
            return False

        taken: Taken = []
        for name, room in wanted.items():
            index = self._indexes.get(name)
            if index is not None and room > 0:
                found = index.take_due(now, min(room, limit), refuse if self._controls or self._rates else None)
                taken.extend((job_id, place, name) for job_id, place in found)
        for job_id, place in refused:
            self._parked.setdefault(self._controls[job_id][0], {})[job_id] = place
        for job_id, place in waiting:
            self._rate_parked.setdefault(self._rates[job_id][0], {})[job_id] = place
        taken.sort(key=lambda item: (-item[1][0], item[1][1], item[1][2]))
        for job_id, _, _ in taken:
            del self._queue_of[job_id]
            control = self._controls.get(job_id)
            if control is not None:
                self.hold(job_id, control[0])
            rate = self._rates.get(job_id)
            if rate is not None:
                self._tokens[job_id] = (rate[0], self._next_start.get(rate[0]))
                self._next_start[rate[0]] = now + rate[1]
        self.restore(taken[limit:])
        return taken[:limit]

    def restore(self, taken: Taken) -> None:
        """Put back jobs taken by :meth:`take_due` whose claim did not happen."""
        for job_id, place, queue in taken:
            self.release(job_id)
            self._give_token_back(job_id)
            if job_id not in self._queue_of:  # not queued again meanwhile
                self._queue_of[job_id] = queue
                self._indexes.setdefault(queue, DueIndex()).restore([(job_id, place)])

    def not_claimed(self, job_ids: Collection[str]) -> None:
        """Jobs taken whose claim found them changed meanwhile (their new state was noted already)."""
        for job_id in job_ids:
            if job_id not in self._queue_of:
                self.release(job_id)
                self._give_token_back(job_id)

    def next_due(self, queues: Collection[str] | None = None) -> float | None:
        """The earliest due time of the queued jobs not parked (of ``queues``, when given), or None."""
        times = [
            due
            for name, index in self._indexes.items()
            if (queues is None or name in queues) and (due := index.next_due()) is not None
        ]
        times += [  # jobs waiting for their task's rate limit: due when it allows the next start
            self._next_start.get(task, 0.0)
            for task, parked in self._rate_parked.items()
            if any(queues is None or self._queue_of.get(job_id) in queues for job_id in parked)
        ]
        return min(times, default=None)

    def depths(self) -> dict[str, int]:
        """Queued jobs per queue (parked ones included), queues with none left out."""
        depths: dict[str, int] = {}
        for queue in self._queue_of.values():
            depths[queue] = depths.get(queue, 0) + 1
        return depths

    def _unpark(self, key: str) -> None:
        parked = self._parked.pop(key, None)
        for job_id, place in (parked or {}).items():
            queue = self._queue_of.get(job_id)
            if queue is not None:
                self._indexes.setdefault(queue, DueIndex()).restore([(job_id, place)])

    def _unpark_one(self, job_id: str) -> None:
        control = self._controls.get(job_id)
        parked = None if control is None else self._parked.get(control[0])
        if parked is not None:
            parked.pop(job_id, None)
        rate = self._rates.get(job_id)
        if rate is not None and job_id in self._rate_parked.get(rate[0], {}):
            del self._rate_parked[rate[0]][job_id]
            if not self._rate_parked[rate[0]]:
                del self._rate_parked[rate[0]]

    def _unpark_rates(self, now: float) -> None:
        """Jobs parked for a rate limit that allows a start now go back to their queue's index."""
        for task in [task for task in self._rate_parked if self._next_start.get(task, now) <= now]:
            for job_id, place in self._rate_parked.pop(task).items():
                queue = self._queue_of.get(job_id)
                if queue is not None:
                    self._indexes.setdefault(queue, DueIndex()).restore([(job_id, place)])

    def _give_token_back(self, job_id: str) -> None:
        """A job taken was not claimed after all: its task's next start is as it was before."""
        token = self._tokens.pop(job_id, None)
        if token is None:
            return
        task, before = token
        if before is None:
            self._next_start.pop(task, None)
        else:
            self._next_start[task] = before
