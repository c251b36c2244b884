"""The use cases callers drive: submit jobs and canvases, read them, wait for them, cancel and retry."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import threading
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

import msgspec

from application.events import Event
from application.outcomes import revoked_error
from application.ports import Clock, Commit, EventBus, Guard, IdSource, JobFilter, JobPage, JobRepository
from application.registry import TaskRegistry
from application.workflows import Advance, WorkflowEngine, new_job
from domain.canvas import Canvas, Signature, check_schedule, final_id, leaves, path_of_chord
from domain.errors import Conflict, IdInUse, InvalidCanvas, InvalidTransition, NotFound
from domain.job import ErrorInfo, Job, Progress
from domain.json_values import ensure_json, json_size
from domain.states import FAILED_STATES, JobState, is_terminal
from domain.workflow import Lineage, Workflow

Snapshot = Job | Workflow


class JobService:
    """Every operation on jobs and workflows that does not run task code."""

    def __init__(
        self,
        *,
        repo: JobRepository,
        registry: TaskRegistry,
        workflows: WorkflowEngine,
        clock: Clock,
        ids: IdSource,
        bus: EventBus,
        wake: Callable[[], None],
        cancel_running: Callable[[str], Awaitable[bool]],
        starter: Starter | None = None,
    ) -> None:
        self._repo = repo
        self._registry = registry
        self._workflows = workflows
        self._clock = clock
        self._ids = ids
        self._bus = bus
        self._wake = wake
        self._cancel_running = cancel_running
        self._starter = starter
        self._thread_waiters: dict[str, list[_ThreadWaiter]] = {}
        self._waiters_lock = threading.Lock()  # waiting threads register themselves
        self._waiters_closed = False
        self._unannounced: collections.deque[tuple[Job, Job | None]] = collections.deque()
        self._announce_lock = threading.Lock()
        self._announce_scheduled = False
        bus.add_listener(self._wake_thread_waiters)

    async def submit(self, signature: Signature, *, lineage: Lineage | None = None) -> Job:
        """Store one job for ``signature``; returns once it is committed (acknowledged = durable).

        ``lineage``: the task that submits it (Celery's parent and root ids), if any.
        """
        job = self._new_job(signature, lineage)
        await self._queue_new(job)
        return job

    async def _queue_new(self, job: Job) -> None:
        advance = Advance()
        await self._workflows.record(advance, job)
        await self._apply_new(advance)

    def submit_from_thread(
        self, signature: Signature, loop: asyncio.AbstractEventLoop, *, lineage: Lineage | None = None
    ) -> Job:
        """:meth:`submit` for a caller on another thread than ``loop`` (the engine's), blocking.

        The job is committed on the caller's thread when the repository can do that, and the loop
        is only told about it (no waiting for two thread switches); otherwise it goes through the loop.
        """
        job = self._new_job(signature, lineage)
        starter = self._starter
        claimed = starter.claim_for_thread(job) if starter is not None else None
        try:
            stored = self._repo.commit_from_thread(Commit(jobs=[claimed or job]))
        except BaseException:
            stored = False
            raise
        finally:
            if not stored and claimed is not None and starter is not None:
                starter.unclaim()
        if not stored:  # stored by the loop, queued; the dispatcher is woken once this thread has its answer
            asyncio.run_coroutine_threadsafe(self._store_queued(job), loop).result()
            loop.call_soon_threadsafe(self._wake)
            return job
        # One wake-up of the loop announces every job submitted until it runs: waking it costs more
        # than a commit, since it then competes with this thread for the GIL.
        self._unannounced.append((job, claimed))
        with self._announce_lock:
            if self._announce_scheduled:
                return job
            self._announce_scheduled = True
        try:
            loop.call_soon_threadsafe(self._announce)
        except RuntimeError:  # the loop is closed: the job waits in storage for the next start
            with self._announce_lock:
                self._announce_scheduled = False
        return job

    async def _store_queued(self, job: Job) -> None:
        """Commit a new job as queued, without starting it: the submitting thread is answered before
        any worker takes it (as with a broker, and as the thread's own commit does on SQLite)."""
        advance = Advance()
        await self._workflows.record(advance, job)
        await self._workflows.apply(advance)

    def _new_job(self, signature: Signature, lineage: Lineage | None) -> Job:
        if signature.link or signature.link_error or signature.headers is not None:
            self._workflows.check(signature)
        ensure_json(signature.args, f"{signature.task} args")
        ensure_json(signature.kwargs, f"{signature.task} kwargs")
        self._registry.require(signature.task).check_arguments(signature.args, signature.kwargs)
        check_schedule(signature)
        if signature.id is not None:
            self._check_reusable([signature.id])
        job_id = signature.id or self._ids.new_id()
        return new_job(self._registry, job_id, signature, self._clock.now(), lineage=lineage)

    def _check_reusable(self, ids: list[str]) -> None:
        """Refuse task ids given at submission that name a job still in use: one not finished, or one of a
        workflow not finished. A finished one is replaced, as Celery's backend overwrites a result."""
        if not ids:
            return
        for job in self._repo.peek_many(ids).values():
            if not is_terminal(job.state):
                raise IdInUse(job.id)
            if job.workflow_id is not None:
                workflow = self._repo.peek_workflow(job.workflow_id)
                if workflow is not None and not is_terminal(workflow.state):
                    raise IdInUse(job.id)

    def _announce(self) -> None:
        """On the loop: publish the jobs other threads submitted, start those stored claimed, and wake
        the dispatcher for the others."""
        with self._announce_lock:
            self._announce_scheduled = False
        now = self._clock.now()
        while self._unannounced:
            job, claimed = self._unannounced.popleft()
            self._bus.publish(Event.of_job(job, now))
            if claimed is not None and self._starter is not None:
                self._starter.launch_claimed(claimed)
        self._wake()

    async def submit_canvas(
        self, canvas: Canvas, *, workflow_id: str | None = None, lineage: Lineage | None = None
    ) -> Workflow:
        """Store a workflow and the jobs that can start at once, in one commit. The stored canvas (the
        workflow's) has an id on every task call and group. Every node is checked as a lone job would be
        (options, schedule, JSON), and so are the arguments of every step known now (see
        :meth:`WorkflowEngine.check_arguments`)."""
        self._workflows.check(canvas)
        self._workflows.check_arguments(canvas)
        self._check_reusable([leaf.id for _, leaf in leaves(canvas) if leaf.id is not None])
        canvas = self._workflows.freeze(canvas)
        if workflow_id is not None and await self._repo.get_workflow(workflow_id) is not None:
            raise InvalidCanvas(f"a workflow with id {workflow_id!r} exists already")
        if workflow_id is None:
            wanted = final_id(canvas)  # Celery's result id, unless a finished run of a reused id holds it
            if wanted is not None and await self._repo.get_workflow(wanted) is None:
                workflow_id = wanted
        advance = Advance()
        workflow = await self._workflows.start(advance, canvas, workflow_id=workflow_id, lineage=lineage)
        await self._apply_new(advance)
        return workflow

    async def extend_chord(
        self,
        workflow_id: str,
        added: list[Canvas],
        *,
        chord_id: str | None = None,
        path: str | None = None,
        close: bool = False,
    ) -> Workflow:
        """Grow the header of a workflow's chord (by its id or path) with ``added``, in one commit;
        ``close`` says no more members will come (the body may then run)."""
        workflow = await self.get_workflow(workflow_id)
        if path is None:
            path = path_of_chord(workflow.canvas, chord_id or "")
            if path is None:
                raise InvalidCanvas(f"workflow {workflow_id} has no chord {chord_id!r}")
        advance = Advance()
        updated = await self._workflows.extend_chord(advance, workflow_id, path, added, close=close)
        await self._apply_new(advance)
        return updated

    async def get(self, job_id: str) -> Job:
        job = await self._repo.get(job_id)
        if job is None:
            raise NotFound("job", job_id)
        return job

    async def get_workflow(self, workflow_id: str) -> Workflow:
        workflow = await self._repo.get_workflow(workflow_id)
        if workflow is None:
            raise NotFound("workflow", workflow_id)
        return workflow

    async def workflow_jobs(self, workflow_id: str) -> list[Job]:
        await self.get_workflow(workflow_id)
        return await self._repo.workflow_jobs(workflow_id)

    async def find(self, ident: str) -> Snapshot:
        """The job or the workflow with this id."""
        job = await self._repo.get(ident)
        if job is not None:
            return job
        workflow = await self._repo.get_workflow(ident)
        if workflow is not None:
            return workflow
        raise NotFound("job or workflow", ident)

    def peek(self, ident: str) -> Snapshot:
        """Like :meth:`find`, blocking, for synchronous callers."""
        job = self._repo.peek(ident)
        if job is not None:
            return job
        workflow = self._repo.peek_workflow(ident)
        if workflow is not None:
            return workflow
        raise NotFound("job or workflow", ident)

    def peek_children(self, job_id: str) -> list[Job]:
        """The jobs ``job_id`` started (its Celery children), blocking; any thread."""
        return self._repo.peek_children(job_id)

    def peek_jobs(self, job_ids: Sequence[str]) -> dict[str, Job]:
        """The jobs among ``job_ids`` that exist, by id, in one read (blocking; any thread)."""
        return self._repo.peek_many(job_ids)

    async def list(self, filter: JobFilter, *, limit: int = 50, cursor: str | None = None) -> JobPage:
        return await self._repo.list_jobs(filter, limit=limit, cursor=cursor)

    async def wait(self, ident: str, timeout: float | None = None) -> Snapshot:
        """The job or workflow once it has finished; raises ``TimeoutError`` after ``timeout`` seconds."""
        subscription = self._bus.subscribe(ident)
        try:
            snapshot = await self.find(ident)
            loop = asyncio.get_running_loop()
            deadline = None if timeout is None else loop.time() + timeout
            while not is_terminal(snapshot.state):
                remaining = None if deadline is None else deadline - loop.time()
                if remaining is not None and remaining <= 0:
                    raise TimeoutError(f"{ident} did not finish within {timeout} s")
                event = await subscription.next(remaining)
                if event is not None and event.id == ident and event.terminal:
                    snapshot = await self.find(ident)
            return snapshot
        finally:
            subscription.close()

    async def wait_step(self, job_id: str, workflow_id: str, timeout: float | None = None) -> Snapshot:
        """A step of a workflow once it has finished, waiting for it to be created first; the workflow
        itself if that ended (failed, revoked) without ever creating the step."""
        subscription = self._bus.subscribe(workflow_id)
        try:
            loop = asyncio.get_running_loop()
            deadline = None if timeout is None else loop.time() + timeout
            while True:
                job = await self._repo.get(job_id)
                if job is not None:
                    break
                workflow = await self.get_workflow(workflow_id)
                if is_terminal(workflow.state):
                    return workflow
                remaining = None if deadline is None else deadline - loop.time()
                if remaining is not None and remaining <= 0:
                    raise TimeoutError(f"{job_id} did not finish within {timeout} s")
                await subscription.next(remaining)
        finally:
            subscription.close()
        remaining = None if deadline is None else max(deadline - loop.time(), 0.0)
        return await self.wait(job_id, remaining)

    async def forget(self, ident: str) -> None:
        """Delete a finished job's stored result (Celery's ``forget``); refused while it still runs."""
        job = await self.get(ident)
        if not is_terminal(job.state):
            raise InvalidTransition(job.id, job.state, "forgotten")
        if job.workflow_id is not None:
            workflow = await self._repo.get_workflow(job.workflow_id)
            if workflow is not None and not is_terminal(workflow.state):
                raise InvalidTransition(job.id, "part of an unfinished workflow", "forgotten")
        await self._repo.forget(job.id)

    def wait_from_thread(self, ident: str, timeout: float | None) -> Snapshot:
        """:meth:`wait` for a caller on another thread than the engine's loop, blocking.

        Reads the state on the caller's thread and, while the job or workflow has not finished,
        waits on a ``threading.Event`` that its terminal event sets. The waiter is registered from
        this thread, under a lock, before the second read: a terminal event published before the
        registration committed its state before that read, so nothing is missed, and the loop is
        not involved at all.
        """
        snapshot = self.peek(ident)
        if is_terminal(snapshot.state):
            return snapshot
        waiter = _ThreadWaiter()
        with self._waiters_lock:
            if self._waiters_closed:
                raise EngineStopped(f"the engine stopped before {ident} finished")
            self._thread_waiters.setdefault(ident, []).append(waiter)
        try:
            snapshot = self.peek(ident)
            if is_terminal(snapshot.state):
                return snapshot
            if not waiter.event.wait(timeout):
                raise TimeoutError(f"{ident} did not finish within {timeout} s")
            if waiter.stopped:
                raise EngineStopped(f"the engine stopped before {ident} finished")
            return self.peek(ident)
        finally:
            self._unwatch(ident, waiter)

    def _unwatch(self, ident: str, waiter: _ThreadWaiter) -> None:
        with self._waiters_lock:
            waiters = self._thread_waiters.get(ident)
            if waiters is not None and waiter in waiters:
                waiters.remove(waiter)
                if not waiters:
                    del self._thread_waiters[ident]

    def _wake_thread_waiters(self, event: Event) -> None:
        if event.terminal and self._thread_waiters:
            with self._waiters_lock:
                waiters = self._thread_waiters.pop(event.id, ())
            for waiter in waiters:
                waiter.event.set()

    @property
    def waiting_threads(self) -> int:
        """Threads blocked in :meth:`wait_from_thread` on a job or workflow not finished yet."""
        with self._waiters_lock:
            return sum(len(waiters) for waiters in self._thread_waiters.values())

    def accept_thread_waiters(self) -> None:
        """Threads may wait again (the engine started)."""
        with self._waiters_lock:
            self._waiters_closed = False

    def release_thread_waiters(self) -> None:
        """Wake every thread in :meth:`wait_from_thread` (the engine is stopping); they raise EngineStopped,
        as does every later wait until :meth:`accept_thread_waiters`."""
        with self._waiters_lock:
            self._waiters_closed = True
            waiters, self._thread_waiters = self._thread_waiters, {}
        for waiting in waiters.values():
            for waiter in waiting:
                waiter.stopped = True
                waiter.event.set()

    async def report_progress(self, job_id: str, state: str, meta: object) -> None:
        """Set the progress of a running job from outside it (Celery's ``update_state(task_id=...)``).

        Refused (InvalidTransition) unless the job is running: only a running job has progress.
        """
        job = await self.get(job_id)
        if job.state != JobState.STARTED or job.lease_owner is None:
            raise InvalidTransition(job.id, job.state, state)
        ensure_json(meta, "update_state meta")
        self._workflows.limits.check_result(json_size(meta), f"the progress meta of {job.task} (job {job.id})")
        progress = Progress(state=state, meta=meta)
        if not await self._repo.save_progress(job.id, job.lease_owner, progress):
            raise Conflict(f"job {job_id} stopped running while its progress was set")
        self._bus.publish(Event.of_progress(job, progress, self._clock.now()))

    async def cancel(self, job_id: str, *, terminate: bool = True) -> Job:
        """Revoke a queued job, or cancel a running one. Refused (InvalidTransition) once finished.

        With ``terminate=False`` (Celery's default for ``revoke``) a running job is left to finish.
        """
        for _ in range(3):
            job = await self.get(job_id)
            if is_terminal(job.state):
                raise InvalidTransition(job.id, job.state, JobState.REVOKED)
            if job.state == JobState.STARTED and not terminate:
                return job
            if job.state == JobState.STARTED and job.waiting_on is not None:
                await self.revoke_workflow(job.waiting_on)
                return await self.get(job_id)
            if job.state == JobState.STARTED and await self._cancel_running(job_id):
                return await self.get(job_id)
            guard = Guard(job_id=job.id, states=frozenset({job.state}))
            revoked = job.failed(revoked_error(job), now=self._clock.now(), state=JobState.REVOKED)
            # STARTED but not running here: claimed and about to be launched (or finishing). Said
            # before the commit, so a launch while it is stored does not run a revoked job.
            starter = self._starter if job.state == JobState.STARTED else None
            if starter is not None:
                starter.revoking_unlaunched(job)
            try:
                await self._store(revoked, guard)
            except Conflict:
                if starter is not None:
                    starter.not_revoking(job)
                continue  # it was claimed or finished meanwhile: look again
            except BaseException:
                if starter is not None:
                    starter.not_revoking(job)
                raise
            return revoked
        raise Conflict(f"job {job_id} kept changing while being cancelled")

    async def revoke_workflow(self, workflow_id: str, *, terminate: bool = True) -> Workflow:
        """Revoke a workflow: it becomes REVOKED and every unfinished job of it is cancelled."""
        workflow = await self.get_workflow(workflow_id)
        if is_terminal(workflow.state):
            raise InvalidTransition(workflow.id, workflow.state, JobState.REVOKED, kind="workflow")
        now = self._clock.now()
        revoked = workflow.finished(
            JobState.REVOKED,
            result=None,
            error=ErrorInfo(type="TaskRevokedError", message=f"workflow {workflow_id} was revoked"),
            now=now,
        )
        advance = Advance(finished_workflows=[workflow_id])
        advance.commit.workflows.append(revoked)
        advance.events.append(Event.of_workflow(revoked, now))
        await self._workflows.apply(advance)
        for job in await self._repo.workflow_jobs(workflow_id):
            if not is_terminal(job.state):
                with contextlib.suppress(InvalidTransition, Conflict):  # it finished meanwhile
                    await self.cancel(job.id, terminate=terminate)
        if workflow.parent_job_id is not None:
            parent = await self._repo.get(workflow.parent_job_id)
            if parent is not None and not is_terminal(parent.state):
                await self._store(parent.failed(revoked_error(parent), now=now, state=JobState.REVOKED), None)
        return revoked

    async def revoke(self, ident: str, *, terminate: bool = True) -> Snapshot:
        """Revoke whatever ``ident`` names: a job or a whole workflow (running jobs are left to
        finish unless ``terminate``)."""
        found = await self.find(ident)
        if isinstance(found, Workflow):
            return await self.revoke_workflow(ident, terminate=terminate)
        return await self.cancel(ident, terminate=terminate)

    async def retry(self, job_id: str) -> Job:
        """Run a FAILURE or REVOKED job again, with a fresh count of attempts."""
        job = await self.get(job_id)
        if job.state not in FAILED_STATES:
            raise InvalidTransition(job.id, job.state, JobState.PENDING)
        again = msgspec.structs.replace(job.requeued(now=self._clock.now()), attempts=0, error=None, result=None)
        advance = Advance()
        advance.commit.guard = Guard(job_id=job.id, states=frozenset({job.state}))
        if job.workflow_id is not None:
            await self._workflows.reopen(advance, job.workflow_id)
            self._workflows.set_outcome(job.workflow_id, again)
        await self._workflows.record(advance, again)
        await self._apply_new(advance)
        return again

    async def _apply_new(self, advance: Advance) -> None:
        """Commit ``advance``, which queues new work: through the dispatcher when there is one, which
        may start due jobs at once, claimed in the same commit."""
        if self._starter is not None:
            await self._starter.start_new(advance)
            return
        await self._workflows.apply(advance)
        self._wake()

    async def _store(self, job: Job, guard: Guard | None) -> None:
        await self._workflows.store(job, guard)
        self._wake()


class Starter(Protocol):
    """What the service needs of the dispatcher to start new jobs without queueing them first."""

    async def start_new(self, advance: Advance) -> None:
        """Commit ``advance`` (new work); due jobs may be claimed in that commit and started."""
        ...

    def claim_for_thread(self, job: Job) -> Job | None:
        """``job`` claimed for storing from another thread, or None (then store it queued)."""
        ...

    def launch_claimed(self, started: Job) -> None:
        """On the loop: start a job claimed by :meth:`claim_for_thread`, now committed."""
        ...

    def unclaim(self) -> None:
        """A job claimed by :meth:`claim_for_thread` was not stored."""
        ...

    def revoking_unlaunched(self, job: Job) -> None:
        """A STARTED job not running here is being revoked: do not launch it if it is still to be."""
        ...

    def not_revoking(self, job: Job) -> None:
        """That revocation was not stored."""
        ...


class _ThreadWaiter:
    """A thread blocked in :meth:`JobService.wait_from_thread`; the loop sets ``event``."""

    __slots__ = ("event", "stopped")

    def __init__(self) -> None:
        self.event = threading.Event()
        self.stopped = False


class EngineStopped(RuntimeError):
    """The engine stopped while a thread was waiting for a job or workflow to finish."""
