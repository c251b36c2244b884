"""``AsyncResult`` and ``GroupResult``: handles on a job or a workflow, as Celery's are."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Iterator
from typing import Any

from application.job_service import Snapshot
from domain.canvas import Group as CanvasGroup
from domain.errors import InvalidTransition, NotFound
from domain.job import ErrorInfo, Job
from domain.states import JobState, is_terminal
from domain.workflow import Workflow
from entrypoints import celery_states as states
from entrypoints.compat import binding
from entrypoints.compat.exceptions import ChordError as ChordError
from entrypoints.compat.exceptions import TaskError as TaskError
from entrypoints.compat.exceptions import TaskRevokedError as TaskRevokedError
from entrypoints.compat.exceptions import UnknownResultError, exception_from


class AsyncResult:
    """A handle on a job or a whole canvas (chain, group, chord) by id; works in a later process too.

    ``get`` and ``revoke`` are awaitable on the engine's loop and blocking from a worker thread;
    ``state``, ``info``, ``ready()`` ... read the stored state at the moment they are called.
    Handles a canvas returns know their workflow (``workflow_id``) and the handle before them
    (``parent``), as Celery's result graph; a step not created yet reads PENDING, or the workflow's
    failure once it failed before reaching it. ``final`` marks the canvas's own handle, whose
    ``get()`` waits for the whole workflow.
    """

    def __init__(
        self,
        id: str,
        *,
        parent: AsyncResult | None = None,
        workflow_id: str | None = None,
        ignored: bool = False,
        backend: Any = None,
        task_name: str | None = None,
        app: Any = None,
    ) -> None:
        self.id = id
        self.parent = parent
        self.workflow_id = workflow_id
        self.ignored = ignored
        self.final = False

    @property
    def task_id(self) -> str:
        return self.id

    def __repr__(self) -> str:
        return f"<{type(self).__name__}: {self.id}>"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, str):
            return other == self.id
        return isinstance(other, AsyncResult) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    @property
    def children(self) -> list[AsyncResult]:
        """Handles of the jobs this one started (Celery's ``children``): the next step of its chain or
        chord, its callbacks, the jobs its code submitted."""
        return [
            AsyncResult(job.id, parent=self, workflow_id=job.workflow_id)
            for job in binding.bridge().peek_children(self.id)
        ]

    def as_tuple(self) -> tuple[Any, Any]:
        """Celery's serialisable form ``((id, parent's form), None)``: what a task returning a handle
        stores (JSON turns the tuples into lists); :func:`result_from_tuple` rebuilds it."""
        return ((self.id, self.parent.as_tuple() if self.parent is not None else None), None)

    def _snapshot(self) -> Snapshot | None:
        jobs = binding.bridge()
        if self.final and self.workflow_id is not None:
            return jobs.peek(self.workflow_id)
        try:
            return jobs.peek(self.id)
        except NotFound:
            if self.workflow_id is None:
                return None
        workflow = jobs.peek(self.workflow_id)
        return workflow if is_terminal(workflow.state) and workflow.state != JobState.SUCCESS else None

    @property
    def state(self) -> str:
        """The current state, as Celery reports it: a running job's custom ``update_state`` state, PENDING
        for a job running without ``track_started``; ``UNKNOWN`` for an id this engine has never seen."""
        snapshot = self._snapshot()
        if snapshot is None:
            return states.PENDING if self.workflow_id is not None else states.UNKNOWN
        if isinstance(snapshot, Job) and snapshot.state == JobState.STARTED:
            if snapshot.progress is not None:
                return snapshot.progress.state
            definition = binding.engine().registry.find(snapshot.task)
            return states.STARTED if definition is not None and definition.track_started else states.PENDING
        if isinstance(snapshot, Workflow) and snapshot.state == JobState.STARTED:
            return states.PENDING
        return snapshot.state.value

    status = state

    @property
    def info(self) -> Any:
        """The result once successful, the exception once failed, the progress meta while running."""
        snapshot = self._snapshot()
        if snapshot is None:
            return None
        return _info(snapshot)

    result = info

    @property
    def traceback(self) -> str | None:
        snapshot = self._snapshot()
        return snapshot.error.traceback if snapshot is not None and snapshot.error is not None else None

    def ready(self) -> bool:
        snapshot = self._snapshot()
        return snapshot is not None and _finished(snapshot)

    def successful(self) -> bool:
        snapshot = self._snapshot()
        return snapshot is not None and _finished(snapshot) and snapshot.state == JobState.SUCCESS

    def failed(self) -> bool:
        """True once it ended in FAILURE (a revoked one has not failed, as in Celery)."""
        snapshot = self._snapshot()
        return snapshot is not None and snapshot.state == JobState.FAILURE

    def maybe_throw(self, propagate: bool = True) -> None:
        snapshot = self._snapshot()
        if propagate and snapshot is not None and snapshot.state in (JobState.FAILURE, JobState.REVOKED):
            _outcome(snapshot, True)

    def get(self, timeout: float | None = None, propagate: bool = True, **_: Any) -> Awaitable[Any] | Any:
        """The result once ready; re-raises the task's error unless ``propagate=False`` (then returns it).

        A handle made with ``ignore_result`` returns None at once, as Celery's does.
        """
        if self.ignored:
            return _done(None)
        ident = self.workflow_id if self.final and self.workflow_id is not None else self.id
        workflow_id = None if self.final else self.workflow_id
        threaded = binding.off_loop()
        if threaded is not None and workflow_id is None:
            try:
                snapshot = binding.bridge().wait(ident, timeout)
            except NotFound:
                raise _unknown(ident) from None
            return _outcome(snapshot, propagate)

        async def wait(engine: Any) -> Any:
            try:
                if workflow_id is not None:
                    snapshot = await engine.jobs.wait_step(ident, workflow_id, timeout)
                else:
                    snapshot = await engine.jobs.wait(ident, timeout)
            except NotFound:
                raise _unknown(ident) from None
            return _outcome(snapshot, propagate)

        return binding.call(wait)

    def wait(self, timeout: float | None = None, propagate: bool = True, **kwargs: Any) -> Awaitable[Any] | Any:
        return self.get(timeout=timeout, propagate=propagate, **kwargs)

    def collect(self, intermediate: bool = False, **kwargs: Any) -> list[tuple[AsyncResult, Any]]:
        """Celery's ``collect()``: (result, value) for this result and its children, depth first."""
        pairs: list[tuple[AsyncResult, Any]] = []
        for node in self._iterdeps():
            pairs.append((node, node.get(**kwargs)))
        return pairs

    def get_leaf(self) -> Any:
        """The value of the last result reached by following children (this one's without children)."""
        value: Any = None
        for node in self._iterdeps():
            value = node.get()
        return value

    def _iterdeps(self) -> list[AsyncResult]:
        found: list[AsyncResult] = []
        stack: list[AsyncResult] = [self]
        while stack:
            node = stack.pop()
            found.append(node)
            stack.extend(reversed(node.children))
        return found

    def revoke(self, connection: Any = None, terminate: bool = False, signal: Any = None, **_: Any) -> Any:
        """Revoke the job (or every unfinished job of the workflow), as Celery's ``revoke``: a queued one
        never runs; a running one finishes unless ``terminate=True``; a finished one is left as it is."""
        ident = self.workflow_id if self.final and self.workflow_id is not None else self.id

        async def revoke(engine: Any) -> None:
            try:
                await engine.jobs.revoke(ident, terminate=terminate)
            except InvalidTransition:  # already finished: harmless, as in Celery
                return

        return binding.call(revoke)

    def forget(self) -> Any:
        """Delete the stored result (Celery's ``forget``): the job then reads as unknown."""
        ident = self.id

        async def forget(engine: Any) -> None:
            await engine.jobs.forget(ident)

        return binding.call(forget)


class _Many:
    """What a set of handles answers about all of them (Celery's ``ResultSet`` and ``GroupResult``)."""

    results: list[AsyncResult]

    def ready(self) -> bool:
        return all(result.ready() for result in self.results)

    def successful(self) -> bool:
        return all(result.successful() for result in self.results)

    def failed(self) -> bool:
        return any(result.failed() for result in self.results)

    def waiting(self) -> bool:
        return not self.ready()

    def completed_count(self) -> int:
        return sum(result.successful() for result in self.results)


class GroupResult(_Many, AsyncResult):
    """The handle of a group: ``results`` are its members' handles; ``get()`` their results in order.

    ``save()`` / ``GroupResult.restore(id)`` work for the groups applied as a whole canvas, which are
    stored under their group id.
    """

    def __init__(
        self,
        id: str | None = None,
        results: list[AsyncResult] | None = None,
        *,
        parent: AsyncResult | None = None,
        workflow_id: str | None = None,
        **_: Any,
    ) -> None:
        super().__init__(id or "", parent=parent, workflow_id=workflow_id)
        self.results = list(results or [])

    @property
    def children(self) -> list[AsyncResult]:
        return self.results

    def as_tuple(self) -> tuple[Any, Any]:
        parent = self.parent.as_tuple() if self.parent is not None else None
        return ((self.id, parent), [result.as_tuple() for result in self.results])

    def __len__(self) -> int:
        return len(self.results)

    def __iter__(self) -> Any:
        return iter(self.results)

    def __getitem__(self, index: int) -> AsyncResult:
        return self.results[index]

    def __contains__(self, item: object) -> bool:
        return any(result == item for result in self.results)

    def get(self, timeout: float | None = None, propagate: bool = True, **kwargs: Any) -> Awaitable[Any] | Any:
        if self.final and self.workflow_id is not None:
            return super().get(timeout=timeout, propagate=propagate, **kwargs)
        return ResultSet(self.results).get(timeout=timeout, propagate=propagate)

    join = get
    join_native = get

    def save(self, backend: Any = None) -> GroupResult:
        """Keep this group for ``GroupResult.restore``: a group applied as a canvas already is."""
        snapshot = self._snapshot() if self.workflow_id is not None else None
        if snapshot is None and self.workflow_id != self.id:
            raise TypeError("only a group applied as a whole canvas can be saved and restored by its id")
        return self

    @classmethod
    def restore(cls, id: str, backend: Any = None, app: Any = None) -> GroupResult | None:
        """The group applied as a canvas under this id (None if there is none), with its members' handles."""
        from entrypoints.compat.graph import result_of

        try:
            found = binding.bridge().peek(id)
        except NotFound:
            return None
        if not isinstance(found, Workflow) or not isinstance(found.canvas, CanvasGroup):
            return None
        handle = result_of(found.canvas, found.id)
        return handle if isinstance(handle, GroupResult) else None


def result_from_tuple(form: Any) -> AsyncResult:
    """The handle :meth:`AsyncResult.as_tuple` describes (Celery's ``result_from_tuple``)."""
    (ident, parent), children = form
    parent_handle = result_from_tuple(parent) if parent else None
    if children is not None:
        return GroupResult(ident, [result_from_tuple(child) for child in children], parent=parent_handle)
    return AsyncResult(ident, parent=parent_handle)


def _done(value: Any) -> Any:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return value
    future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    future.set_result(value)
    return future


class ResultSet(_Many):
    """Several handles waited on together, as Celery's ``ResultSet``: ``get()`` gives their results in
    order (raising the first failure, in order, unless ``propagate=False``).

    Finished jobs are read many at a time (up to 512 per query), so joining thousands of handles costs
    a few reads, not one wait each; only a handle still running is waited on.
    """

    def __init__(self, results: list[AsyncResult]) -> None:
        self.results = list(results)

    def __len__(self) -> int:
        return len(self.results)

    def add(self, result: AsyncResult) -> None:
        if result not in self.results:
            self.results.append(result)

    def get(self, timeout: float | None = None, propagate: bool = True) -> Awaitable[list[Any]] | list[Any]:
        """The results in order, once all are ready; ``timeout`` bounds the whole wait."""
        if any(result.workflow_id is not None for result in self.results):
            return _one_by_one(self.results, timeout, propagate)
        ids = [result.id for result in self.results]
        threaded = binding.off_loop()
        if threaded is not None:
            bridge = binding.bridge()
            deadline = None if timeout is None else time.monotonic() + timeout

            def wait_from_thread(ident: str) -> Snapshot:
                return bridge.wait(ident, _remaining(deadline, timeout))

            return _join(bridge, ids, propagate, wait_from_thread)

        async def join(engine: Any) -> list[Any]:
            deadline = None if timeout is None else time.monotonic() + timeout
            values: list[Any] = []
            while len(values) < len(ids):
                values += await _finished_prefix_on_loop(engine.jobs, ids, propagate, len(values))
                if len(values) < len(ids):
                    ident = ids[len(values)]
                    try:
                        snapshot = await engine.jobs.wait(ident, _remaining(deadline, timeout))
                    except NotFound:
                        raise _unknown(ident) from None
                    values.append(_outcome(snapshot, propagate))
            return values

        return binding.call(join)

    join = get


def _one_by_one(results: list[AsyncResult], timeout: float | None, propagate: bool) -> Awaitable[list[Any]] | list[Any]:
    """Join handles of a canvas's steps (which may not exist yet) by waiting on each in turn."""
    deadline = None if timeout is None else time.monotonic() + timeout
    if binding.off_loop() is not None:
        return [result.get(timeout=_remaining(deadline, timeout), propagate=propagate) for result in results]

    async def join(engine: Any) -> list[Any]:
        return [await result.get(timeout=_remaining(deadline, timeout), propagate=propagate) for result in results]

    return binding.call(join)


def _remaining(deadline: float | None, timeout: float | None) -> float | None:
    if deadline is None:
        return None
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError(f"the results were not all ready within {timeout} s")
    return left


def _finished_prefix(jobs: Any, ids: list[str], propagate: bool, start: int) -> list[Any]:
    """The outcomes of ``ids[start:]`` that have finished, in order, up to the first that has not.

    Read in batches that double while every job read has finished (8, 16, ... 512): all done costs
    a read per 512, and following jobs as they finish costs no large reads of unfinished ones.
    ``jobs``: the bridge (blocking reads).
    """
    values: list[Any] = []
    for chunk in _chunks(ids, start):
        if not _outcomes_of(chunk, jobs.peek_jobs(chunk), propagate, values):
            break
    return values


async def _finished_prefix_on_loop(jobs: Any, ids: list[str], propagate: bool, start: int) -> list[Any]:
    """:func:`_finished_prefix` on the engine's loop; ``jobs``: the job service."""
    values: list[Any] = []
    for chunk in _chunks(ids, start):
        if not _outcomes_of(chunk, await jobs.get_many(chunk), propagate, values):
            break
    return values


def _chunks(ids: list[str], start: int) -> Iterator[list[str]]:
    size = 8
    while start < len(ids):
        yield ids[start : start + size]
        start += size
        size = min(size * 2, 512)


def _outcomes_of(chunk: list[str], found: dict[str, Job], propagate: bool, values: list[Any]) -> bool:
    """Append the outcomes of ``chunk`` (read as ``found``) to ``values`` while they are finished; whether
    all were (a job not finished, or a workflow id, is waited on by itself)."""
    for ident in chunk:
        snapshot = found.get(ident)
        if snapshot is None or not is_terminal(snapshot.state):
            return False
        values.append(_outcome(snapshot, propagate))
    return True


def _join(jobs: Any, ids: list[str], propagate: bool, wait: Any) -> list[Any]:
    values: list[Any] = []
    while len(values) < len(ids):
        values += _finished_prefix(jobs, ids, propagate, len(values))
        if len(values) < len(ids):
            try:
                snapshot = wait(ids[len(values)])
            except NotFound:
                raise _unknown(ids[len(values)]) from None
            values.append(_outcome(snapshot, propagate))
    return values


def _unknown(ident: str) -> UnknownResultError:
    return UnknownResultError(f"no job or workflow with id {ident!r}")


def _outcome(snapshot: Snapshot, propagate: bool) -> Any:
    """What ``get()`` gives for a finished job or workflow: its result, or its error raised (or returned)."""
    if snapshot.state == JobState.SUCCESS:
        return snapshot.result
    error = exception_from(snapshot.error or ErrorInfo(type="TaskRevokedError", message=f"{snapshot.id} was revoked"))
    if propagate:
        raise error
    return error


def _finished(snapshot: Snapshot) -> bool:
    return is_terminal(snapshot.state)


def _info(snapshot: Job | Workflow) -> Any:
    if snapshot.state == JobState.SUCCESS:
        return snapshot.result
    if snapshot.error is not None and snapshot.state in (JobState.FAILURE, JobState.REVOKED, JobState.RETRY):
        return exception_from(snapshot.error)
    if isinstance(snapshot, Job) and snapshot.progress is not None:
        return snapshot.progress.meta
    return None
