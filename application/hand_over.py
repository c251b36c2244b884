"""Starting new work as it is stored: the dispatcher's side of :class:`~application.ports.starter.Starter`.

A submission or a workflow's next steps due now are claimed by this engine in the very commit that stores
them when slots are free (the engine's and their queue's) and nothing else is due, so one transaction both
stores and claims them; the others are stored queued and wake the claim loop.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import msgspec

from application.due_work import DueWork
from application.ports import Clock, Guard
from application.run_slots import QueueSlots, RunSlots
from application.workflows import Advance, WorkflowEngine
from domain.job import Job
from domain.states import QUEUED_STATES, JobState

log = logging.getLogger("application.dispatcher")


class HandOver:
    """The :class:`~application.dispatcher.Dispatcher`'s hand-over of new jobs (a mixin: it shares the
    dispatcher's slots, due work and launch)."""

    owner: str
    queues: QueueSlots
    _slots: RunSlots
    _due: DueWork
    _wake: asyncio.Event
    _clock: Clock
    _accepting: bool
    _lease_seconds: float
    _workflows: WorkflowEngine
    _finishing: set[asyncio.Task[Any]]

    @property
    def running(self) -> bool:
        raise NotImplementedError

    def _launch(self, job: Job) -> None:
        raise NotImplementedError

    def _give(self, job: Job, *, announce: bool = True) -> None:
        raise NotImplementedError

    async def _store(self, job: Job, guard: Guard, *, hand_over: bool = False, result_size: int | None = None) -> None:
        raise NotImplementedError

    async def start_new(self, advance: Advance) -> None:
        """Commit ``advance``, which queues new jobs (a submission, a workflow's first or next steps);
        those due now start at once when slots are free, claimed in that same commit (see
        :meth:`_hand_over`), the others wait for a claim."""
        handed = self._hand_over(advance)
        try:
            await self._workflows.apply(advance)
        except BaseException:
            for started in handed:
                self._give(started)
            raise
        for started in handed:
            self._launch_or_requeue(started)
        queued = [job for job in advance.commit.jobs if job.state in QUEUED_STATES]
        if queued:
            self.queued(queued)

    def queued(self, jobs: list[Job]) -> None:
        """This engine just stored ``jobs`` queued: claimed at once when one is due now; else the loop
        only wakes up sooner (:meth:`DueWork.stored`)."""
        served = [job for job in jobs if self.queues.serves(job.queue)]
        self._due.stored([job.due_at for job in served], self._clock.now())
        if any(job.options.rate_limit is not None for job in served):
            self._due.unknown = True  # its rate limit may put its start later: the next drained claim reads it
        self._wake.set()

    def _hand_over(self, advance: Advance) -> list[Job]:
        """Turn the new due jobs of ``advance`` into jobs claimed by this engine, as many as there are
        free slots, so they start right after the commit: a submission or a chain step costs one
        transaction, not two. Only when nothing else is due, so no queued job is overtaken."""
        now = self._clock.now()
        candidates = [
            index
            for index, new in enumerate(advance.commit.jobs)
            if new.state == JobState.PENDING
            and new.attempts == 0
            and new.due_at <= now
            and self.queues.serves(new.queue)
            and not self._held_back(new)
        ]
        if not candidates:
            return []
        candidates.sort(key=lambda index: -advance.commit.jobs[index].priority)
        taken = self._reserve(len(candidates), now)
        handed: list[Job] = []
        for index in candidates:
            if len(handed) == taken:
                break
            if not self.queues.take_one(advance.commit.jobs[index].queue):  # its queue is full: it waits
                continue
            started = self._claimed_here(advance.commit.jobs[index], now)
            advance.commit.jobs[index] = started
            handed.append(started)
        self._slots.give(taken - len(handed))
        return handed

    @staticmethod
    def _held_back(job: Job) -> bool:
        """A job with a concurrency key or a rate limit is claimed from storage, where its key's holders are
        counted and its task's last start is known."""
        return job.concurrency is not None or job.options.rate_limit is not None

    def _reserve(self, wanted: int, now: float) -> int:
        """Up to ``wanted`` free slots for jobs claimed as they are stored; none while not dispatching or
        while a job in storage may be due (it comes first). Any thread (:class:`RunSlots` is atomic)."""
        if not self._accepting or not self.running or self._due.may_be_due(now):
            return 0
        return self._slots.take(wanted)

    def _claimed_here(self, job: Job, now: float) -> Job:  # as a claim from the queue leaves it
        return job.started(owner=self.owner, now=now, lease_until=now + self._lease_seconds)

    def claim_new(self, job: Job) -> Job | None:
        """For a submitter about to store the new ``job`` itself (from any thread): the job claimed by
        this engine, to store that way, when a slot is free and nothing else is due; None otherwise.
        Once it is committed, :meth:`launch_claimed` (on the loop) starts it; if it is not stored,
        :meth:`unclaim`."""
        now = self._clock.now()
        if job.due_at > now or not self.queues.serves(job.queue) or self._held_back(job):
            return None
        if self._reserve(1, now) == 0:
            return None
        if not self.queues.take_one(job.queue):  # its queue is full: it waits
            self._slots.give()
            return None
        return self._claimed_here(job, now)

    def launch_claimed(self, started: Job) -> None:
        """On the loop: start a job :meth:`claim_new` claimed, now committed, in the slot it holds."""
        self._launch_or_requeue(started)

    def _launch_or_requeue(self, started: Job) -> None:
        """Start a job claimed as it was stored; if this engine began stopping meanwhile, put it back
        in the queue as it was (no attempt counted: it never ran), so the next start runs it."""
        if self._accepting:
            self._launch(started)
            return
        self._give(started)
        queued = msgspec.structs.replace(
            started.requeued(now=self._clock.now()), attempts=started.attempts - 1, due_at=started.due_at
        )
        self._store_later(queued, Guard(job_id=started.id, owner=self.owner))

    def _store_later(self, job: Job, guard: Guard) -> None:
        """Store ``job`` from synchronous code on the loop (finished before the engine stops)."""
        store = asyncio.ensure_future(self._store(job, guard))
        self._finishing.add(store)
        store.add_done_callback(self._stored_later)

    def _stored_later(self, store: asyncio.Future[None]) -> None:
        self._finishing.discard(store)
        if not store.cancelled() and store.exception() is not None:
            log.warning("a job's new state was not stored and is left to recovery (%s)", store.exception())

    def unclaim(self, job: Job) -> None:
        """The job :meth:`claim_new` claimed (``job``, as it returned it) was not stored: free its slots.
        Any thread."""
        self._give(job, announce=False)
