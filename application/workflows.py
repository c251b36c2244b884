"""Advancing workflows: turning a job's outcome into the next jobs, inside the same commit.

Keeps the live state of unfinished workflows in memory (loaded from the repository on first use,
so it also serves after a restart); each advance is planned synchronously on that state, so two
jobs of one workflow finishing at once cannot both miss, or both create, the step they unblock.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import msgspec

from application.callbacks import callbacks_for, chord_errbacks, with_errback_of
from application.events import Event
from application.new_jobs import new_job
from application.outcomes import error_info
from application.ports import Clock, Commit, EventBus, Guard, IdSource, JobStore
from application.registry import TaskRegistry
from domain.canvas import (
    Canvas,
    Chord,
    Group,
    Signature,
    first_leaf,
    freeze,
    leaves,
    node_at,
    sibling_leaves,
    task_names,
    validate,
    with_header,
)
from domain.errors import InvalidCanvas, NotJsonValue, ResultTooLarge
from domain.job import CallOptions, ErrorInfo, Job
from domain.json_values import json_size
from domain.limits import DEFAULT_LIMITS, Limits
from domain.planner import LeafOutcome, ReadyLeaf, plan, plan_after
from domain.states import JobState, is_terminal
from domain.workflow import Lineage, Workflow

WORKFLOW_RETRIES = 20
"""How many times a change is planned again because other engines kept advancing its workflow meanwhile."""


@dataclass
class WorkflowState:
    """A workflow and the outcome of every job created for it so far, by canvas path.

    ``waiting`` counts, per group of plain signatures, the members not yet successful: a member's
    success unblocks nothing while others are still out, so planning (a walk of the whole canvas)
    is skipped for it, which keeps a chord of n members O(n) rather than O(n²) (the group's members
    are listed once, on its first success, not on each).
    """

    workflow: Workflow
    outcomes: dict[str, LeafOutcome] = field(default_factory=dict)
    root_task_id: str | None = None
    """Celery's ``root_id`` for this workflow's jobs."""
    waiting: dict[str, set[str]] = field(default_factory=dict)
    unplain: set[str] = field(default_factory=set)
    """Groups with a member that is not a plain signature (their members are always planned)."""
    stored_bytes: int = 0
    """The JSON size of the arguments and results of the workflow's jobs so far (``max_workflow_bytes``)."""
    full_plan: bool = False
    """The next plan walks the whole canvas (after a load or a reopen); otherwise a finished job's plan
    walks only the nodes above it (:func:`domain.planner.plan_after`)."""
    version: int = 0
    """The workflow's stored version once every advance planned on this state so far is committed: an
    advance expects the version before its own (see :meth:`WorkflowEngine.advancing`)."""

    def settles_nothing(self, path: str) -> bool:
        """Whether the success just recorded at ``path`` leaves its group still waiting on others."""
        group, _, last = path.rpartition(".")
        if not path or last == "b" or group in self.unplain:
            return False
        waiting = self.waiting.get(group)
        if waiting is None:
            siblings = sibling_leaves(self.workflow.canvas, path)
            if siblings is None:
                self.unplain.add(group)
                return False
            waiting = self.waiting[group] = {
                sibling
                for sibling in siblings
                if (outcome := self.outcomes.get(sibling)) is None or outcome.state != JobState.SUCCESS
            }
        waiting.discard(path)
        return bool(waiting)


def leaf_outcome(job: Job) -> LeafOutcome:
    return LeafOutcome(job_id=job.id, task=job.task, state=job.state, result=job.result, error=job.error)


@dataclass
class Advance:
    """What one advance adds to a commit, and the events to publish once it is committed."""

    commit: Commit = field(default_factory=Commit)
    events: list[Event] = field(default_factory=list)
    finished_workflows: list[str] = field(default_factory=list)
    new_workflows: set[str] = field(default_factory=set)


class WorkflowEngine:
    """Builds workflows' jobs from the planner; every write goes into a caller's :class:`Advance`."""

    def __init__(
        self,
        repo: JobStore,
        registry: TaskRegistry,
        clock: Clock,
        ids: IdSource,
        bus: EventBus,
        *,
        shared_storage: bool = True,
    ) -> None:
        self._repo = repo
        self._shared = shared_storage
        self._bus = bus
        self._registry = registry
        self._clock = clock
        self._ids = ids
        self._states: dict[str, WorkflowState] = {}
        self.limits: Limits = DEFAULT_LIMITS
        """What a result, a step's arguments and a workflow may hold (see :mod:`domain.limits`)."""

    def check(self, canvas: Canvas) -> None:
        """Refuse a canvas that is malformed, too large, or names an unregistered task (its callbacks' too)."""
        validate(canvas)
        for name in task_names(canvas):
            if name not in self._registry:
                raise InvalidCanvas(f"unknown task {name!r}: it is not registered")

    def check_arguments(self, canvas: Canvas) -> None:
        """Refuse (:class:`InvalidArguments`) a canvas with a step whose arguments are fully known now and do
        not fit its task: the steps it starts with (their arguments as they will be created) and every
        immutable step. The others get a predecessor's result first; they are checked when they run."""
        for ready in plan(canvas, {}).ready:
            self._registry.require(ready.signature.task).check_arguments(ready.args, ready.signature.kwargs)
        for _, leaf in leaves(canvas):
            if leaf.immutable:
                self._registry.require(leaf.task).check_arguments(list(leaf.args), leaf.kwargs)

    def freeze(self, canvas: Canvas) -> Canvas:
        """``canvas`` with an id on every task call and group (Celery's ``freeze``), as it will be stored."""
        return freeze(canvas, self._ids.new_id)

    async def start(
        self,
        advance: Advance,
        canvas: Canvas,
        *,
        parent: Job | None = None,
        workflow_id: str | None = None,
        lineage: Lineage | None = None,
        idempotency_key: str | None = None,
    ) -> Workflow:
        """A new workflow for ``canvas``, with the jobs that can start at once, added to ``advance``.

        With ``parent``, the workflow replaces that running job (``self.replace``) and shares its root.
        ``lineage`` says which task sent it (Celery's parent and root ids of its first steps);
        ``idempotency_key`` the key it is submitted under, kept with it.
        """
        now = self._clock.now()
        if parent is not None and lineage is None:
            lineage = Lineage(
                parent_id=parent.id,
                root_id=parent.options.root_id or parent.id,
                replaced_task_nesting=parent.options.replaced_task_nesting + 1,
            )
        workflow = Workflow(
            id=workflow_id or self._ids.new_id(),
            canvas=self.freeze(canvas),
            created_at=now,
            parent_job_id=parent.id if parent else None,
            root_id=(parent.root_id or parent.workflow_id or parent.id) if parent else None,
            lineage=lineage,
            idempotency_key=idempotency_key,
        )
        state = WorkflowState(workflow, root_task_id=_root_task_id(workflow))
        self._states[workflow.id] = state
        advance.new_workflows.add(workflow.id)
        advance.commit.workflows.append(workflow)
        advance.events.append(Event.of_workflow(workflow, now))
        await self._plan_and_finish(advance, state, workflow.lineage.parent_id if workflow.lineage else None)
        return state.workflow

    async def record(self, advance: Advance, job: Job, *, result_size: int | None = None) -> None:
        """Add ``job``'s new state to ``advance``, and if it finished, whatever that unblocks: the next
        steps of its workflow and its ``link``/``link_error`` callbacks.

        A success whose result is past a limit (its own, or its workflow's total) is recorded as a
        failure with :class:`ResultTooLarge` instead. ``result_size``: the result's JSON size when the
        caller measured it (and checked it against ``max_result_bytes``)."""
        if job.state == JobState.SUCCESS:
            job = await self._within_limits(job, result_size)
        advance.commit.jobs.append(job)
        advance.events.append(Event.of_job(job, self._clock.now()))
        if not is_terminal(job.state):
            return
        await self._apply_callbacks(advance, callbacks_for(job, self._registry))
        if job.workflow_id is None or job.node is None:
            return
        state = await self._load(job.workflow_id)
        if state is None:
            return
        self.advancing(advance, state)
        state.outcomes[job.node] = leaf_outcome(job)
        if job.state == JobState.SUCCESS and state.settles_nothing(job.node):
            return
        if not is_terminal(state.workflow.state):
            await self._plan_and_finish(advance, state, job.id, changed=job.node)

    async def _within_limits(self, job: Job, result_size: int | None) -> Job:
        """``job`` (a success), or its failure with :class:`ResultTooLarge` when its result is past
        ``max_result_bytes`` or would take its workflow past ``max_workflow_bytes``."""
        try:
            if result_size is None:
                try:
                    result_size = json_size(job.result)
                except NotJsonValue:
                    return job  # the repository refuses it, and the dispatcher fails it (ResultNotStorable)
                self.limits.check_result(result_size, f"the result of {job.task} (job {job.id})")
            if job.workflow_id is None or job.node is None:
                return job
            state = await self._load(job.workflow_id)
            if state is None:
                return job
            self.limits.check_workflow(
                state.stored_bytes + result_size, f"workflow {job.workflow_id}'s stored arguments and results"
            )
            state.stored_bytes += result_size
            return job
        except ResultTooLarge as exc:
            failed = msgspec.structs.replace(job, state=JobState.STARTED, result=None)
            return failed.failed(error_info(exc), now=self._clock.now())

    async def _apply_callbacks(self, advance: Advance, callbacks: list[tuple[Canvas, Lineage, CallOptions]]) -> None:
        """Store each callback as a lone job (a signature) or a workflow (a canvas), in ``advance``."""
        now = self._clock.now()
        for canvas, lineage, options in callbacks:
            if isinstance(canvas, Signature):
                signature = canvas if canvas.id is not None else msgspec.structs.replace(canvas, id=self._ids.new_id())
                job = new_job(self._registry, signature.id or "", signature, now, lineage=lineage)
                if options.errback_of is not None:
                    job = with_errback_of(job, options.errback_of)
                await self.record(advance, job)
            else:
                await self.start(advance, canvas, lineage=lineage)

    async def store(self, job: Job, guard: Guard | None = None) -> Advance:
        """Store ``job``'s new state and whatever it unblocks, in one commit; the applied advance."""
        advance = Advance()
        advance.commit.guard = guard
        await self.record(advance, job)
        await self.apply(advance)
        return advance

    async def apply(self, advance: Advance) -> None:
        """Commit ``advance`` in one transaction, then publish its events.

        If the commit fails, the cached state of every workflow it touched is dropped, to be
        reloaded from what was really stored.
        """
        try:
            await self._repo.commit(advance.commit)
        except BaseException:
            for workflow_id in {job.workflow_id for job in advance.commit.jobs} | {
                workflow.id for workflow in advance.commit.workflows
            }:
                if workflow_id is not None:
                    self.forget(workflow_id)
            raise
        for workflow_id in advance.finished_workflows:
            self.forget(workflow_id)
        for event in advance.events:
            self._bus.publish(event)

    async def extend_chord(
        self, advance: Advance, workflow_id: str, chord_path: str, added: list[Canvas], *, close: bool
    ) -> Workflow:
        """Add ``added`` to the header of the chord at ``chord_path`` (Celery's ``add_to_chord``, a
        header given as a generator), the jobs that can start at once with it, all in ``advance``.

        Members whose task id is already in the header are skipped, so a task that runs again after a
        crash does not add the same member twice. Refused (InvalidCanvas) once the chord's body exists
        or the workflow finished.
        """
        state = await self._load(workflow_id)
        if state is None:
            raise InvalidCanvas(f"no workflow with id {workflow_id!r}")
        if is_terminal(state.workflow.state):
            raise InvalidCanvas(f"workflow {workflow_id} has finished: its chords take no more members")
        self.advancing(advance, state)
        chord = node_at(state.workflow.canvas, chord_path)
        body = f"{chord_path}.b" if chord_path else "b"
        if not isinstance(chord, Chord) or any(path == body or path.startswith(f"{body}.") for path in state.outcomes):
            raise InvalidCanvas("the chord's header is complete: its body has started")
        known = {leaf.id for _, leaf in leaves(Group(members=chord.header))}
        fresh = [self.freeze(member) for member in added]
        fresh = [member for member in fresh if not (isinstance(member, Signature) and member.id in known)]
        for member in fresh:
            self.check(member)
        canvas = with_header(state.workflow.canvas, chord_path, fresh, close=close)
        state.workflow = msgspec.structs.replace(state.workflow, canvas=canvas)
        state.waiting.pop(chord_path, None)
        state.unplain.discard(chord_path)
        advance.commit.workflows.append(state.workflow)
        await self._plan_and_finish(advance, state, None)
        return state.workflow

    def new_id(self) -> str:
        return self._ids.new_id()

    def advancing(self, advance: Advance, state: WorkflowState) -> None:
        """``advance`` is planned on ``state``: its commit expects the workflow's stored version to be the
        one this state stands for, and moves it on by one. Several engines may advance one workflow (on a
        shared database): a commit planned on outcomes another engine has changed since is refused
        (:class:`~domain.errors.WorkflowChanged`) and planned again on the stored state. In one engine,
        advances are committed in the order they are planned, so each expects the previous one's version.
        An engine that alone uses its storage (``shared_storage=False``: SQLite's lock file enforces it)
        has the only copy of each workflow's state, so it checks no versions: they cost a read and a
        write per commit."""
        workflow_id = state.workflow.id
        if not self._shared or workflow_id in advance.new_workflows or workflow_id in advance.commit.workflow_versions:
            return
        advance.commit.workflow_versions[workflow_id] = state.version
        state.version += 1

    async def guard(self, advance: Advance, workflow_id: str) -> None:
        """Make ``advance`` expect the workflow's current version (a change made outside a plan: a revoke)."""
        state = await self._load(workflow_id)
        if state is not None:
            self.advancing(advance, state)

    def forget(self, workflow_id: str) -> None:
        """Drop the cached state of a workflow (after it finished, or when a commit failed)."""
        self._states.pop(workflow_id, None)

    async def reopen(self, advance: Advance, workflow_id: str) -> None:
        """A failed workflow runs on again (a retried job of it): back to PENDING, error cleared."""
        state = await self._load(workflow_id)
        if state is None or state.workflow.state not in (JobState.FAILURE, JobState.REVOKED):
            return
        self.advancing(advance, state)
        state.workflow = msgspec.structs.replace(
            state.workflow, state=JobState.PENDING, result=None, error=None, finished_at=None
        )
        state.full_plan = True  # steps fail-fast left uncreated elsewhere in the canvas are found again
        advance.commit.workflows.append(state.workflow)

    def set_outcome(self, workflow_id: str, job: Job) -> None:
        """Update the cached outcome of a job without planning (a job re-queued by a retry)."""
        state = self._states.get(workflow_id)
        if state is not None and job.node is not None:
            state.outcomes[job.node] = leaf_outcome(job)

    async def _plan_and_finish(
        self, advance: Advance, state: WorkflowState, trigger: str | None, *, changed: str | None = None
    ) -> None:
        """Plan ``state``'s workflow (after the job at canvas path ``changed`` finished, when given) and
        finish it, and the job it replaced, once it is done."""
        now = self._clock.now()
        finished = await self._plan(advance, state, now, trigger, changed)
        if finished is None or finished.parent_job_id is None:
            return
        parent = await self._repo.get(finished.parent_job_id)
        if parent is None or is_terminal(parent.state):
            return
        if finished.state == JobState.SUCCESS:
            done = parent.succeeded(finished.result, now=now)
        else:
            error = finished.error or ErrorInfo(type="TaskRevokedError", message="replacement was revoked")
            done = parent.failed(error, now=now, state=finished.state)
        await self.record(advance, done)

    async def _plan(
        self, advance: Advance, state: WorkflowState, now: float, trigger: str | None, changed: str | None
    ) -> Workflow | None:
        if changed is None or state.full_plan:
            state.full_plan = False
            outcome = plan(state.workflow.canvas, state.outcomes)
        else:
            outcome = plan_after(state.workflow.canvas, state.outcomes, changed)
        refused = self._refuse_oversized(state, outcome.ready)
        if refused is not None:  # that step fails unrun, without its arguments; its siblings are not created
            ready, exc = refused
            job = self._job_for(state, msgspec.structs.replace(ready, args=[]), now, trigger)
            job = job.failed(error_info(exc), now=now)
            state.outcomes[ready.path] = leaf_outcome(job)
            advance.commit.jobs.append(job)
            advance.events.append(Event.of_job(job, now))
            outcome = plan_after(state.workflow.canvas, state.outcomes, ready.path)
        for ready in outcome.ready:
            job = self._job_for(state, ready, now, trigger)
            state.outcomes[ready.path] = leaf_outcome(job)
            advance.commit.jobs.append(job)
            advance.events.append(Event.of_job(job, now))
        if outcome.state is None:
            return None
        if outcome.failed_path is not None and outcome.error is not None:
            failed = state.outcomes.get(outcome.failed_path)
            errbacks = chord_errbacks(
                state.workflow.canvas,
                outcome.failed_path,
                failed.job_id if failed else "",
                outcome.error,
                self._registry,
            )
            await self._apply_callbacks(advance, errbacks)
        finished = state.workflow.finished(outcome.state, result=outcome.result, error=outcome.error, now=now)
        state.workflow = finished
        advance.commit.workflows.append(finished)
        advance.events.append(Event.of_workflow(finished, now))
        advance.finished_workflows.append(finished.id)
        return finished

    def _refuse_oversized(
        self, state: WorkflowState, ready: list[ReadyLeaf]
    ) -> tuple[ReadyLeaf, ResultTooLarge] | None:
        """The first step whose arguments are past ``max_step_args_bytes`` or would take the workflow past
        ``max_workflow_bytes``, with the error; None when all fit (then they are counted in the total).

        A value given to many steps (a group's input) is measured once."""
        sizes: dict[int, int] = {}
        total = state.stored_bytes
        for leaf in ready:
            size = 2 + max(len(leaf.args) - 1, 0)
            for arg in leaf.args:
                known = sizes.get(id(arg))
                if known is None:
                    try:
                        known = sizes[id(arg)] = json_size(arg)
                    except NotJsonValue:
                        known = 0  # checked when it was stored or submitted; the repository refuses it otherwise
                size += known
            try:
                self.limits.check_step_args(size, f"the arguments of {leaf.signature.task} (workflow step {leaf.path})")
                total += size
                self.limits.check_workflow(total, f"workflow {state.workflow.id}'s stored arguments and results")
            except ResultTooLarge as exc:
                return leaf, exc
        state.stored_bytes = total
        return None

    def _job_for(self, state: WorkflowState, ready: ReadyLeaf, now: float, trigger: str | None) -> Job:
        workflow = state.workflow
        job = new_job(
            self._registry,
            ready.signature.id or self._ids.new_id(),
            ready.signature,
            now,
            args=ready.args,
            workflow_id=workflow.id,
            node=ready.path,
            lineage=Lineage(
                parent_id=trigger,
                root_id=state.root_task_id,
                replaced_task_nesting=workflow.lineage.replaced_task_nesting if workflow.lineage else 0,
            ),
            group=(ready.group_id, ready.group_index),
        )
        return msgspec.structs.replace(job, root_id=workflow.root)

    async def _load(self, workflow_id: str) -> WorkflowState | None:
        state = self._states.get(workflow_id)
        if state is not None:
            return state
        workflow = await self._repo.get_workflow(workflow_id)
        if workflow is None:
            return None
        jobs = await self._repo.workflow_jobs(workflow_id)
        state = self._states.get(workflow_id)  # another coroutine may have loaded it meanwhile
        if state is None:
            outcomes = {job.node: leaf_outcome(job) for job in jobs if job.node is not None}
            state = self._states[workflow_id] = WorkflowState(workflow, outcomes, _root_task_id(workflow))
            state.version = workflow.version
            state.stored_bytes = sum(_stored_size(job) for job in jobs)
            state.full_plan = True
        return state


def _stored_size(job: Job) -> int:
    """The JSON size of a stored job's arguments and result (what counts towards its workflow's total)."""
    try:
        return json_size(job.args) + (json_size(job.result) if job.result is not None else 0)
    except NotJsonValue:
        return 0


def _root_task_id(workflow: Workflow) -> str | None:
    """Celery's ``root_id`` for the jobs of ``workflow``: the root of the task that sent it, else its first task."""
    if workflow.lineage is not None and workflow.lineage.root_id is not None:
        return workflow.lineage.root_id
    first = first_leaf(workflow.canvas)
    return first.id if first is not None else workflow.id
