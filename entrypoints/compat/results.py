"""``AsyncResult`` and ``GroupResult``: handles on a job or a workflow, as Celery's are."""

from __future__ import annotations

import builtins
from collections.abc import Awaitable
from typing import Any

from application.dispatcher import MaxRetriesExceededError
from application.job_service import Snapshot
from application.outcomes import TimeLimitExceeded, WorkerLostError
from domain.errors import InvalidCanvas, NotFound, NotJsonValue, UnknownTask
from domain.job import ErrorInfo, Job
from domain.states import JobState, is_terminal
from domain.workflow import Workflow
from entrypoints import celery_states as states
from entrypoints.compat import binding


class TaskError(Exception):
    """Base of exceptions rebuilt from a stored error whose type is not a Python builtin."""


class UnknownResultError(LookupError):
    """No job or workflow has this id (Celery would report PENDING; this engine knows better)."""


class ChordError(TaskError):
    """A chord's header member failed, so its body was never called (as Celery's ``ChordError``)."""


class TaskRevokedError(TaskError):
    """The job or workflow was revoked before it finished."""


_rebuilt: dict[str, type[BaseException]] = {
    cls.__name__: cls
    for cls in (
        ChordError,
        TaskRevokedError,
        NotJsonValue,
        UnknownTask,
        InvalidCanvas,
        TimeLimitExceeded,
        WorkerLostError,
        MaxRetriesExceededError,
    )
}


def exception_from(error: ErrorInfo) -> BaseException:
    """The stored error as an exception of the same type name: a builtin, or a class made once per name."""
    cls = _rebuilt.get(error.type)
    if cls is None:
        found = getattr(builtins, error.type, None)
        if isinstance(found, type) and issubclass(found, Exception):
            cls = found
        else:
            cls = type(error.type, (TaskError,), {"__module__": __name__})
        _rebuilt[error.type] = cls
    try:
        exc = cls(error.message)
    except Exception:
        exc = TaskError(f"{error.type}: {error.message}")
    exc.__notes__ = [f"remote traceback:\n{error.traceback}"] if error.traceback else []
    return exc


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
            engine_, loop = threaded
            try:
                snapshot = engine_.jobs.wait_from_thread(ident, timeout, loop)
            except NotFound:
                raise UnknownResultError(f"no job or workflow with id {ident!r}") from None
            return _outcome(snapshot, propagate)

        async def wait(engine: Any) -> Any:
            try:
                snapshot = await engine.jobs.wait(ident, timeout)
            except NotFound:
                raise UnknownResultError(f"no job or workflow with id {ident!r}") from None
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
