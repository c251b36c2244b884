"""The use cases callers drive: submit jobs and canvases, read them, wait for them, cancel and retry."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence

import msgspec

from application.events import Event
from application.idempotency import KEY_ATTEMPTS, Idempotency, check_idempotency_key, key_for, reused_in_use
from application.new_jobs import new_job
from application.outcomes import revoked_error
from application.ports import (
    Clock,
    EventBus,
    Guard,
    IdempotencyKey,
    IdSource,
    JobFilter,
    JobPage,
    ServiceStore,
    Starter,
)
from application.ports.job_trace import JobTrace
from application.ports.schedule_store import ScheduleTick
from application.registry import TaskRegistry
from application.workflows import WORKFLOW_RETRIES, Advance, WorkflowEngine
from domain.canvas import Canvas, Signature, check_schedule, final_id, leaves, path_of_chord
from domain.errors import (
    Conflict,
    IdempotencyKeyReused,
    IdempotencyKeyTaken,
    InvalidCanvas,
    InvalidTransition,
    NotFound,
    WorkflowChanged,
)
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
        repo: ServiceStore,
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
        self.trace: JobTrace | None = None
        """Told of each job this service ends without an engine running it (revoked while queued)."""

    @property
    def starter(self) -> Starter | None:
        """The dispatcher this service starts new jobs through (None: it only queues them)."""
        return self._starter

    def now(self) -> float:
        """The engine's clock: what relative times given at submission (``expires`` in seconds) count from."""
        return self._clock.now()

    async def submit(self, signature: Signature, *, lineage: Lineage | None = None) -> Job:
        """Store one job for ``signature``; returns once it is committed (acknowledged = durable).

        ``lineage``: the task that submits it (Celery's parent and root ids), if any.
        """
        job = self.new_job(signature, lineage=lineage)
        if signature.id is not None:
            pending = await self.check_reusable([signature.id], call=job)
            if pending is not None:  # the same call under its unfinished id: sent twice, stored once
                return pending
        await self.queue_new(job)
        return job

    async def submit_once(
        self, signature: Signature, idempotency: Idempotency, *, lineage: Lineage | None = None
    ) -> tuple[Job, bool]:
        """:meth:`submit` under an idempotency key: ``(job, True)`` when this call stored it (the key in the
        same commit), ``(job as it is now, False)`` when an earlier call with the same key and fingerprint
        did. Raises :class:`IdempotencyKeyReused` when the key was used for another request. Of concurrent
        calls with one key (on any engine of the storage), one stores its job; the others return it."""
        check_idempotency_key(idempotency.key)
        for _ in range(KEY_ATTEMPTS):
            found = await self._keyed(idempotency, "job")
            if isinstance(found, Job):
                return found, False
            job = self.new_job(signature, lineage=lineage)
            job = msgspec.structs.replace(
                job, options=msgspec.structs.replace(job.options, idempotency_key=idempotency.key)
            )
            if signature.id is not None:
                await self.check_reusable([signature.id])
            try:
                await self.queue_new(job, idempotency=key_for(idempotency, "job", job.id, job.created_at))
            except IdempotencyKeyTaken:
                continue  # stored by a concurrent call meanwhile: read it
            return job, True
        raise Conflict(f"idempotency key {idempotency.key!r} kept changing hands")

    async def submit_canvas_once(
        self, canvas: Canvas, idempotency: Idempotency | None, *, lineage: Lineage | None = None
    ) -> tuple[Workflow, bool]:
        """:meth:`submit_canvas` under an idempotency key, as :meth:`submit_once` does for a job (without
        one, :meth:`submit_canvas`)."""
        if idempotency is None:
            return await self.submit_canvas(canvas, lineage=lineage), True
        check_idempotency_key(idempotency.key)
        for _ in range(KEY_ATTEMPTS):
            found = await self._keyed(idempotency, "workflow")
            if isinstance(found, Workflow):
                return found, False
            try:
                return await self.submit_canvas(canvas, lineage=lineage, idempotency=idempotency), True
            except IdempotencyKeyTaken:
                continue
        raise Conflict(f"idempotency key {idempotency.key!r} kept changing hands")

    async def _keyed(self, idempotency: Idempotency, kind: str) -> Snapshot | None:
        """What an earlier submission with this key stored (None if the key is free); raises
        :class:`IdempotencyKeyReused` if that submission was another request."""
        held = await self._repo.idempotency_key(idempotency.key)
        if held is None:
            return None
        if held.fingerprint != idempotency.fingerprint or held.kind != kind:
            raise IdempotencyKeyReused(idempotency.key, f"{held.kind} {held.target}")
        if held.kind == "job":
            return await self._repo.get(held.target)
        return await self._repo.get_workflow(held.target)

    async def queue_new(self, job: Job, *, idempotency: IdempotencyKey | None = None) -> None:
        """Commit a new job (from :meth:`new_job`, its id checked): claimed in that commit and started when
        the dispatcher has a free slot and nothing else is due, else queued. With ``idempotency``, the key
        is stored in that commit (:class:`IdempotencyKeyTaken` and nothing stored if it is taken)."""
        advance = Advance()
        advance.commit.idempotency = idempotency
        await self._workflows.record(advance, job)
        await self._apply_new(advance)

    async def queue_tick(self, job: Job, tick: ScheduleTick) -> None:
        """Commit a periodic schedule's job (from :meth:`new_job`) with its tick, as :meth:`queue_new` does:
        refused whole (``Conflict``) when the tick was fired already or its schedule moved on."""
        advance = Advance()
        await self._workflows.record(advance, job)
        advance.commit.tick = tick
        await self._apply_new(advance)

    def new_job(self, signature: Signature, *, lineage: Lineage | None = None) -> Job:
        """The job ``signature`` asks for, checked (task, arguments, options, schedule) but not stored;
        reads nothing, so any thread may call it. A given id is checked by :meth:`check_reusable`."""
        if signature.link or signature.link_error or signature.headers is not None:
            self._workflows.check(signature)
        ensure_json(signature.args, f"{signature.task} args")
        ensure_json(signature.kwargs, f"{signature.task} kwargs")
        self._registry.require(signature.task).check_arguments(signature.args, signature.kwargs)
        check_schedule(signature)
        job_id = signature.id or self._ids.new_id()
        return new_job(self._registry, job_id, signature, self._clock.now(), lineage=lineage)

    async def check_reusable(self, ids: list[str], *, call: Job | None = None) -> Job | None:
        """Refuse task ids given at submission that name a job still in use: one not finished, or one of a
        workflow not finished. A finished one is replaced, as Celery's backend overwrites a result. ``call``:
        the lone job about to be stored under ``ids[0]``; if that id names an unfinished lone job of the same
        call (task, arguments), that job is returned instead of refused (see :func:`reused_in_use`)."""
        if not ids:
            return None
        jobs = await self._repo.get_many(ids)
        workflow_ids = {job.workflow_id for job in jobs.values() if job.workflow_id is not None}
        workflows = {wid: await self._repo.get_workflow(wid) for wid in workflow_ids}
        return reused_in_use(list(jobs.values()), workflows, call=call)

    def announce(self, submitted: Sequence[tuple[Job, Job | None]]) -> None:
        """On the loop: publish jobs stored by submitters that commit themselves (``(job, claimed)``:
        ``claimed`` when it was stored claimed by the dispatcher, which then starts it), and wake the
        dispatcher for the others."""
        now = self._clock.now()
        queued = False
        for job, claimed in submitted:
            self._bus.publish(Event.of_job(job, now))
            if claimed is not None and self._starter is not None:
                self._starter.launch_claimed(claimed)
            else:
                queued = True
        if queued:
            self._wake()

    async def submit_canvas(
        self,
        canvas: Canvas,
        *,
        workflow_id: str | None = None,
        lineage: Lineage | None = None,
        idempotency: Idempotency | None = None,
    ) -> Workflow:
        """Store a workflow and the jobs that can start at once, in one commit. The stored canvas (the
        workflow's) has an id on every task call and group. Every node is checked as a lone job would be
        (options, schedule, JSON), and so are the arguments of every step known now (see
        :meth:`WorkflowEngine.check_arguments`)."""
        self._workflows.check(canvas)
        self._workflows.check_arguments(canvas)
        await self.check_reusable([leaf.id for _, leaf in leaves(canvas) if leaf.id is not None])
        canvas = self._workflows.freeze(canvas)
        if workflow_id is not None and await self._repo.get_workflow(workflow_id) is not None:
            raise InvalidCanvas(f"a workflow with id {workflow_id!r} exists already")
        if workflow_id is None:
            wanted = final_id(canvas)  # Celery's result id, unless a finished run of a reused id holds it
            if wanted is not None and await self._repo.get_workflow(wanted) is None:
                workflow_id = wanted
        advance = Advance()
        workflow = await self._workflows.start(
            advance,
            canvas,
            workflow_id=workflow_id,
            lineage=lineage,
            idempotency_key=None if idempotency is None else idempotency.key,
        )
        if idempotency is not None:  # see submit_canvas_once
            advance.commit.idempotency = key_for(idempotency, "workflow", workflow.id, workflow.created_at)
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

    async def get_many(self, job_ids: Sequence[str]) -> dict[str, Job]:
        """The jobs among ``job_ids`` that exist, by id, in one read."""
        return await self._repo.get_many(job_ids)

    async def children(self, job_id: str) -> list[Job]:
        """The jobs ``job_id`` started (its Celery children), in the order they were stored."""
        return await self._repo.children(job_id)

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
            # A STARTED job is revoked only under the claim it was read with: while a cancel waited on an
            # engine that did not answer, its lease may have expired and another engine run it again.
            owner = job.lease_owner if job.state == JobState.STARTED else None
            guard = Guard(job_id=job.id, states=frozenset({job.state}), owner=owner)
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
            if self.trace is not None:  # no engine ran it: its line is said here
                self.trace.finished(job, revoked)
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
        await self._workflows.guard(advance, workflow_id)  # an engine advancing it meanwhile plans again
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
        for attempt in range(WORKFLOW_RETRIES + 1):
            try:
                await self._workflows.store(job, guard)
                break
            except WorkflowChanged:  # another engine advanced its workflow: plan again on what is stored
                if attempt == WORKFLOW_RETRIES:
                    raise
        self._wake()


class EngineStopped(RuntimeError):
    """The engine stopped while a thread was waiting for a job or workflow to finish."""
