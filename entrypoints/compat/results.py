"""``AsyncResult`` and ``GroupResult``: handles on a job or a workflow, as Celery's are."""

from __future__ import annotations

import time
from collections.abc import Awaitable
from typing import Any

from application.job_service import Snapshot
from domain.errors import NotFound
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
    """

    def __init__(self, id: str) -> None:
        self.id = id

    @property
    def task_id(self) -> str:
        return self.id

    def __repr__(self) -> str:
        return f"<{type(self).__name__}: {self.id}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AsyncResult) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    def _snapshot(self) -> Snapshot | None:
        try:
            return binding.engine().jobs.peek(self.id)
        except NotFound:
            return None

    @property
    def state(self) -> str:
        """The current state; a running job's custom ``update_state`` state; ``UNKNOWN`` for unknown ids."""
        snapshot = self._snapshot()
        if snapshot is None:
            return states.UNKNOWN
        if isinstance(snapshot, Job) and snapshot.state == JobState.STARTED and snapshot.progress is not None:
            return snapshot.progress.state
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
        snapshot = self._snapshot()
        return snapshot is not None and _finished(snapshot) and snapshot.state in (JobState.FAILURE, JobState.REVOKED)

    def get(self, timeout: float | None = None, propagate: bool = True) -> Awaitable[Any] | Any:
        """The result once ready; re-raises the task's error unless ``propagate=False`` (then returns it)."""
        ident = self.id
        threaded = binding.off_loop()
        if threaded is not None:
            engine_ = threaded[0]
            try:
                snapshot = engine_.jobs.wait_from_thread(ident, timeout)
            except NotFound:
                raise _unknown(ident) from None
            return _outcome(snapshot, propagate)

        async def wait(engine: Any) -> Any:
            try:
                snapshot = await engine.jobs.wait(ident, timeout)
            except NotFound:
                raise _unknown(ident) from None
            return _outcome(snapshot, propagate)

        return binding.call(wait)

    def wait(self, timeout: float | None = None, propagate: bool = True) -> Awaitable[Any] | Any:
        return self.get(timeout=timeout, propagate=propagate)

    def revoke(self, terminate: bool = True) -> Awaitable[Any] | Any:
        """Revoke the job (queued or running) or every unfinished job of the workflow."""
        ident = self.id

        async def revoke(engine: Any) -> None:
            await engine.jobs.revoke(ident)

        return binding.call(revoke)

    def forget(self) -> None:
        """Accepted for compatibility; results are purged by retention, not per handle."""


class GroupResult(AsyncResult):
    """The handle of a group: ``get()`` returns the members' results in group order."""


class ResultSet:
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

    def ready(self) -> bool:
        return all(result.ready() for result in self.results)

    def successful(self) -> bool:
        return all(result.successful() for result in self.results)

    def failed(self) -> bool:
        return any(result.failed() for result in self.results)

    def completed_count(self) -> int:
        return sum(result.successful() for result in self.results)

    def waiting(self) -> bool:
        return not self.ready()

    def get(self, timeout: float | None = None, propagate: bool = True) -> Awaitable[list[Any]] | list[Any]:
        """The results in order, once all are ready; ``timeout`` bounds the whole wait."""
        ids = [result.id for result in self.results]
        threaded = binding.off_loop()
        if threaded is not None:
            engine_ = threaded[0]
            deadline = None if timeout is None else time.monotonic() + timeout

            def wait_from_thread(ident: str) -> Snapshot:
                return engine_.jobs.wait_from_thread(ident, _remaining(deadline, timeout))

            return _join(engine_.jobs, ids, propagate, wait_from_thread)

        async def join(engine: Any) -> list[Any]:
            deadline = None if timeout is None else time.monotonic() + timeout
            values: list[Any] = []
            while len(values) < len(ids):
                values += _finished_prefix(engine.jobs, ids, propagate, len(values))
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
    """
    values: list[Any] = []
    size = 8
    while start < len(ids):
        chunk = ids[start : start + size]
        found = jobs.peek_jobs(chunk)
        for ident in chunk:
            snapshot = found.get(ident)
            if snapshot is None or not is_terminal(snapshot.state):
                return values  # not finished, or a workflow id: waited on by itself
            values.append(_outcome(snapshot, propagate))
        start += len(chunk)
        size = min(size * 2, 512)
    return values


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
