"""The dispatcher: claims due jobs, runs them under a concurrency limit, stores what they did.

Woken by an event when work arrives or a slot frees; otherwise it sleeps until the next job is
due. No fixed-interval polling: an idle engine does no work at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import random
import time
from collections.abc import Callable, Mapping
from typing import Any

from application.claims import QueueClaims
from application.due_work import DueWork
from application.events import Event
from application.execution import ENGINE_STOPPING, JobCancelled, JobContext, ReplaceRequested
from application.hand_over import HandOver
from application.keyed_locks import KeyedLocks
from application.outcomes import error_info, revoked_error
from application.ports import Clock, DispatcherStore, EventBus, Guard, Runner
from application.ports.job_trace import JobTrace
from application.recovery import recover_lost, renew_leases
from application.registry import TaskRegistry
from application.run_slots import QueueSlots, RunSlots
from application.task_run import MaxRetriesExceededError, TaskRun
from application.workflows import WORKFLOW_RETRIES, Advance, WorkflowEngine
from domain.errors import Conflict, DomainError, NotJsonValue, NotStorable, ResultNotStorable, WorkflowChanged
from domain.job import ErrorInfo, Job, Progress
from domain.json_values import json_size
from domain.states import JobState

__all__ = ["Dispatcher", "JobTrace", "MaxRetriesExceededError"]

log = logging.getLogger(__name__)


class Dispatcher(HandOver):
    """Runs queued jobs: at most ``max_concurrent`` at once, highest priority and oldest first."""

    def __init__(
        self,
        *,
        repo: DispatcherStore,
        runner: Runner,
        registry: TaskRegistry,
        workflows: WorkflowEngine,
        clock: Clock,
        bus: EventBus,
        owner: str,
        max_concurrent: int = 10,
        lease_seconds: float = 60.0,
        random_fraction: Callable[[], float] = random.random,
        queues: Mapping[str, int | None] | None = None,
    ) -> None:
        if max_concurrent < 1:
            raise ValueError("max_concurrent must be at least 1")
        self._repo = repo
        self._runner = runner
        self._registry = registry
        self._workflows = workflows
        self._clock = clock
        self._bus = bus
        self.owner = owner
        self._lease_seconds = lease_seconds
        self._task_run = TaskRun(
            runner=runner,
            registry=registry,
            clock=clock,
            limits=lambda: workflows.limits,
            random_fraction=random_fraction,
        )
        self.store_patience = 30.0
        self._running: dict[str, tuple[asyncio.Task[None], JobContext]] = {}
        self._finishing: set[asyncio.Task[Any]] = set()
        self._slots = RunSlots(max_concurrent)  # held by running jobs and jobs claimed, not launched yet
        self.queues = QueueSlots(queues)
        """The named queues served (None: all) and their own limits within ``max_concurrent``."""
        self._claims = QueueClaims(repo, self.queues, owner=owner, lease_seconds=lease_seconds)
        self._workflow_commits = KeyedLocks()
        self._due = DueWork()  # whether due jobs may wait in storage, unclaimed (see _reserve)
        self._revoked_unlaunched: set[tuple[str, float | None]] = set()  # claims revoked; see revoking_unlaunched
        self._wake = asyncio.Event()
        self._accepting = True
        self._loop_task: asyncio.Task[None] | None = None
        self._renew_task: asyncio.Task[None] | None = None
        self.trace: JobTrace | None = None
        """Told about each job taken to run and what it did (None: nothing is)."""

    @property
    def running(self) -> bool:
        return self._loop_task is not None and not self._loop_task.done()

    @property
    def max_concurrent(self) -> int:
        """How many jobs run at once, at most; may change while running (on the loop)."""
        return self._slots.size

    @max_concurrent.setter
    def max_concurrent(self, value: int) -> None:
        self._slots.resize(value)

    @property
    def active_jobs(self) -> int:
        return len(self._running)

    @property
    def next_due(self) -> float | None:
        """When the dispatcher next looks for due work unless woken sooner (None: only when woken), as last
        known: a job waiting on its task's rate limit makes it the time that limit allows the next start."""
        return self._due.next_due

    @property
    def reserved_slots(self) -> int:
        """Slots held by jobs claimed but not launched (yet): 0 whenever nothing is being started."""
        return self._slots.taken - len(self._running)

    def wake(self) -> None:
        """There may be new due work in storage (a submission, a retry, a recovery)."""
        self._due.announced()
        self._wake.set()

    def _slot_freed(self) -> None:
        self._wake.set()

    async def start(self, *, recover_all_leases: bool) -> None:
        """Recover jobs whose worker died, then start claiming.

        With ``recover_all_leases`` (this engine is the only one on its storage) every lease left
        by an earlier process is dead now; otherwise only expired leases are.
        """
        await self.recover(math.inf if recover_all_leases else self._clock.now())
        await self._due.drained(self._claims.next_due_at, self._clock.now())
        self._accepting = True
        self._loop_task = asyncio.create_task(self._loop(), name="geekblog-dispatcher")
        self._renew_task = asyncio.create_task(
            renew_leases(self._repo, self._clock, self.owner, self._lease_seconds, lambda: list(self._running)),
            name="geekblog-lease-renewal",
        )

    async def stop(self, grace: float = 0.0) -> None:
        """Stop claiming; let running jobs finish within ``grace`` seconds, then cancel the rest.

        Jobs cancelled here keep their lease and are recovered by the next start.
        """
        self._accepting = False
        self.wake()
        for task in (self._loop_task, self._renew_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        running = [task for task, _ in self._running.values()]
        if running and grace > 0:
            log.info("stopping: waiting up to %s s for %d running job(s)", grace, len(running))
            await asyncio.wait(running, timeout=grace)
        left = list(self._running.values())
        for task, context in left:
            context.cancel(ENGINE_STOPPING)
            task.cancel()
        if left:
            log.warning("stopped: left %d running job(s) to recovery at the next start", len(left))
        if running:
            await asyncio.gather(*running, return_exceptions=True)
        if self._finishing:  # outcomes being stored: let them land before storage closes
            await asyncio.wait(list(self._finishing), timeout=max(grace, 5.0))

    async def recover(self, expired_before: float) -> int:
        """Re-queue (or fail, for tasks that opted out) the jobs of dead workers (:mod:`application.recovery`)."""
        return await recover_lost(self._repo, self._clock, self._store, expired_before, self._recovered)

    def _recovered(self, job: Job, changed: Job) -> None:
        """``job``'s attempt ended with its engine: told to :attr:`trace` as ``changed`` (queued again, or
        failed with ``WorkerLostError``), its run counted from its start to now."""
        if self.trace is not None:
            now = self._clock.now()
            self.trace.finished(job, changed, runtime=max(now - (job.started_at or now), 0.0))

    def revoking_unlaunched(self, job: Job) -> None:
        """``job``, STARTED but not running here, is being revoked: if its claim was committed but it
        has not been launched yet, that claim must not be launched (a launch looks here first; the
        claim is told apart from later ones by its ``started_at``)."""
        self._revoked_unlaunched.add((job.id, job.started_at))

    def not_revoking(self, job: Job) -> None:
        """The revocation announced by :meth:`revoking_unlaunched` was not stored."""
        self._revoked_unlaunched.discard((job.id, job.started_at))

    async def cancel_running(self, job_id: str, reason: str = "revoked") -> bool:
        """Cancel a job running here; returns once its revocation is stored. False if not running here."""
        entry = self._running.get(job_id)
        if entry is None:
            return False
        task, context = entry
        context.cancel(reason)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.shield(task)
        return True

    async def _loop(self) -> None:
        while self._accepting:
            self._wake.clear()
            # A freed slot alone is no reason to query storage: due work there is always announced
            # (wake) or read as the next due time, so the next submission can be handed over instead.
            looked_due = self._due.may_be_due(self._clock.now())
            free = self._slots.take(self.max_concurrent) if looked_due else 0
            claimed: list[Job] = []
            if free > 0:
                now = self._clock.now()
                self._due.claiming()
                try:
                    claimed = await self._claims.claim(now, free)
                except asyncio.CancelledError:
                    self._slots.give(free)  # stopping: the next start finds every slot free
                    raise
                except Exception:
                    self._slots.give(free)
                    log.exception("claiming jobs failed; retrying shortly")
                    await self._sleep(1.0)
                    continue
                self._slots.give(free - len(claimed))
                for job in claimed:
                    self._launch(job)
            if free > 0 and len(claimed) == free:
                continue
            if free > len(claimed):
                await self._due.drained(self._claims.next_due_at, now)
            now = self._clock.now()
            timeout: float | None = None
            if self._due.may_be_due(now):  # claim again at once, or (no slot was free) once a slot frees;
                timeout = None if looked_due and free == 0 else 0.0  # what fell due since the look: at once
            elif self._due.next_due is not None:
                timeout = self._due.next_due - now
            await self._sleep(timeout)

    def _give(self, job: Job, *, announce: bool = True) -> None:
        """Give back the slots ``job`` held (the engine's and its queue's)."""
        if self.queues.give_one(job.queue) and announce:  # due jobs may wait in that queue, unclaimed
            self._due.announced()
            self._wake.set()
        self._slots.give()

    async def _sleep(self, timeout: float | None) -> None:
        if timeout is not None and timeout <= 0:
            await asyncio.sleep(0)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout)

    def _launch(self, job: Job) -> None:
        """Run ``job``, claimed by this engine, in the slot it holds."""
        if (job.id, job.started_at) in self._revoked_unlaunched:  # revoked once claimed: never runs
            self._revoked_unlaunched.discard((job.id, job.started_at))
            self._give(job)
            return
        expires = job.options.expires
        if self.trace is not None:
            self.trace.received(job)
        if expires is not None and self._clock.now() > expires:  # Celery revokes an expired task unrun
            error = ErrorInfo(type="TaskRevokedError", message=f"job {job.id} ({job.task}) expired")
            revoked = job.failed(error, now=self._clock.now(), state=JobState.REVOKED)
            if self.trace is not None:
                self.trace.finished(job, revoked)
            self._give(job)
            self._store_later(revoked, Guard(job_id=job.id, owner=self.owner))
            return
        context = JobContext(job, asyncio.get_running_loop(), self._report_progress)
        task = asyncio.create_task(self._execute(job, context), name=f"job-{job.id}")
        self._running[job.id] = (task, context)
        self._bus.publish(Event.of_job(job, self._clock.now()))

    async def _execute(self, job: Job, context: JobContext) -> None:
        try:
            changed = await self._outcome(job, context)
        except asyncio.CancelledError:
            if context.cancel_reason == ENGINE_STOPPING:
                self._stopped_running(job.id)
                raise  # keeps its lease: the next start recovers it
            changed = job.failed(revoked_error(job), now=self._clock.now(), state=JobState.REVOKED)
        # The task code is done: its slot is free while the outcome is stored, so the next claim can
        # share that commit's transaction.
        self._stopped_running(job.id)
        finishing = asyncio.current_task()
        if finishing is not None:
            self._finishing.add(finishing)
        self._slot_freed()
        try:
            await self._persist(job, changed)
        finally:
            self._revoked_unlaunched.discard((job.id, job.started_at))
            self._finishing.discard(finishing)  # type: ignore[arg-type,unused-ignore]

    def _stopped_running(self, job_id: str) -> None:
        entry = self._running.pop(job_id, None)
        if entry is not None:
            self._give(entry[1].job)

    async def _persist(self, job: Job, changed: Job | ReplaceRequested) -> None:
        """Store what the job did, retrying while storage fails (locked, full) for up to ``store_patience``
        seconds; after that the job keeps its lease, which expires into a recovery."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.store_patience
        delay = 0.05
        while True:
            try:
                if isinstance(changed, ReplaceRequested):
                    await self._replace(job, changed)
                else:
                    await self._store(
                        changed,
                        Guard(job_id=job.id, owner=self.owner),
                        hand_over=True,
                        result_size=self._task_run.pop_result_size(job.id),
                    )
                return
            except WorkflowChanged:
                log.error(
                    "job %s: its workflow kept changing for %s s; it will be recovered", job.id, self.store_patience
                )
                return
            except Conflict:
                log.warning("job %s: result refused, its lease was lost", job.id)
                return
            except NotStorable as exc:
                # Storing it again cannot succeed: the job fails now, once, and is not run again.
                if isinstance(changed, Job) and changed.state == JobState.FAILURE and changed.result is None:
                    log.error("job %s: even its failure cannot be stored (%s); it will be recovered", job.id, exc)
                    return
                log.error("job %s: its outcome cannot be stored (%s); it fails with ResultNotStorable", job.id, exc)
                self._task_run.pop_result_size(job.id)
                refused = ResultNotStorable(f"the outcome of {job.task} cannot be stored: {exc}")
                changed = job.failed(error_info(refused), now=self._clock.now())
                continue
            except Exception as exc:
                if not self._accepting or loop.time() + delay > deadline:
                    log.error("job %s: storing its outcome failed (%s); it will be recovered", job.id, exc)
                    return
                log.warning("job %s: storing its outcome failed (%s); retrying in %.2f s", job.id, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    async def _outcome(self, job: Job, context: JobContext) -> Job | ReplaceRequested:
        """Run the task and turn what it did into the job's next state (or a replacement); tell
        :attr:`trace`."""
        trace = self.trace
        if trace is None:
            return (await self._task_run.run(job, context))[0]
        started = time.perf_counter()
        try:
            outcome, value, exc = await self._task_run.run(job, context)
        except asyncio.CancelledError:  # revoked while running (``_execute`` stores it), unless the engine stops
            if context.cancel_reason != ENGINE_STOPPING:
                revoked = job.failed(revoked_error(job), now=self._clock.now(), state=JobState.REVOKED)
                trace.finished(job, revoked, runtime=time.perf_counter() - started)
            raise
        trace.finished(job, outcome, value=value, exc=exc, runtime=time.perf_counter() - started)
        return outcome

    async def _replace(self, job: Job, replace: ReplaceRequested) -> None:
        """The job waits for a new workflow of ``replace.canvas``; both are stored in one commit."""
        guard = Guard(job_id=job.id, owner=self.owner)
        try:
            self._workflows.check(replace.canvas)
            self._workflows.check_arguments(replace.canvas)
        except DomainError as exc:
            await self._store(job.failed(error_info(exc), now=self._clock.now()), guard)
            return
        advance = Advance()
        advance.commit.guard = guard
        child_id = self._workflows.new_id()
        await self._workflows.record(advance, job.waiting_for(child_id))
        await self._workflows.start(advance, replace.canvas, parent=job, workflow_id=child_id)
        await self._workflows.apply(advance)
        self.wake()

    async def _store(self, job: Job, guard: Guard, *, hand_over: bool = False, result_size: int | None = None) -> None:
        """Store ``job``'s new state and what it unblocks (with ``hand_over``, an outcome: the steps it
        unblocks may start at once, claimed in that commit, see :meth:`_hand_over`; ``result_size``: its
        result's JSON size when measured). One workflow's outcomes are stored here one at a time; one that
        another engine's commit overtook is planned again after a short random pause growing with the
        attempts, for ``store_patience`` seconds; then :class:`WorkflowChanged` (left to recovery)."""
        async with self._workflow_commits.held(job.workflow_id):  # its other outcomes here wait their turn
            await self._store_planned(job, guard, hand_over=hand_over, result_size=result_size)

    async def _store_planned(self, job: Job, guard: Guard, *, hand_over: bool, result_size: int | None) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.store_patience
        for attempt in itertools.count():
            try:
                await self._store_once(job, guard, hand_over=hand_over, result_size=result_size)
                return
            except WorkflowChanged:
                if attempt >= WORKFLOW_RETRIES and loop.time() > deadline:
                    raise
                log.debug("job %s: its workflow changed under the plan; planning again", job.id)
            await asyncio.sleep(random.uniform(0, min(0.0005 * 2 ** min(attempt, 10), 0.05)))

    async def _store_once(self, job: Job, guard: Guard, *, hand_over: bool, result_size: int | None) -> None:
        advance = Advance()
        advance.commit.guard = guard
        await self._workflows.record(advance, job, result_size=result_size)
        if hand_over and advance.commit.jobs[1:]:
            await self.start_new(advance)
            if any(map(_lets_a_key_go, advance.commit.jobs)):  # a replaced job finished with its workflow
                self.wake()
            return
        await self._workflows.apply(advance)
        if advance.commit.jobs[1:] or _lets_a_key_go(job):
            self.wake()  # new jobs stored, or a concurrency key let go: jobs waiting on it may start
        elif job.state in (JobState.RETRY, JobState.PENDING):
            self.queued([job])

    async def _report_progress(self, job: Job, progress: Progress) -> None:
        """Store and publish progress. Progress is best effort: storage trouble never fails the job; meta
        past ``GEEKBLOG_MAX_RESULT_BYTES`` raises :class:`ResultTooLarge` in the task, before it is stored."""
        if progress.meta is not None:
            try:
                size = json_size(progress.meta)
            except NotJsonValue as exc:
                raise ResultNotStorable(f"update_state meta of {job.task}: {exc}") from None
            self._workflows.limits.check_result(size, f"the progress meta of {job.task} (job {job.id})")
        try:
            held = await self._repo.save_progress(job.id, self.owner, progress)
        except Exception as exc:
            log.warning("job %s: progress not stored (%s)", job.id, exc)
            held = True
        if not held:
            raise JobCancelled("lease lost")
        self._bus.publish(Event.of_progress(job, progress, self._clock.now()))


def _lets_a_key_go(job: Job) -> bool:
    """Whether storing ``job`` lets its concurrency key go (jobs waiting on it may start)."""
    return job.concurrency is not None and job.state != JobState.STARTED
