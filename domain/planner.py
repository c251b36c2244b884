"""The workflow planner: a pure function from (canvas, what its tasks did) to what to create next.

The engine stores one job per task call that has become ready, keyed by its path in the canvas.
After any job of a workflow finishes, :func:`plan` says which further task calls are now ready
(with their arguments, a parent's result prepended as Celery does) and whether the workflow as a
whole has finished. Because it is pure, the engine can store a job's outcome and the jobs it
unblocks in one transaction, and a workflow resumes after a crash from the stored jobs alone.

Failure is fail-fast: once any task call fails, the workflow fails with that call's own error
(a failed chord header member's exception, as Celery's ``get()`` raises it) and nothing new is
created; calls already running finish on their own.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from domain.canvas import Canvas, Chain, Chord, Group, Signature, children
from domain.job import ErrorInfo
from domain.states import JobState


class LeafOutcome(msgspec.Struct, frozen=True, kw_only=True):
    """What the job created for one task call has done so far (any state, terminal or not)."""

    job_id: str
    task: str
    state: JobState
    result: Any = None
    error: ErrorInfo | None = None


class ReadyLeaf(msgspec.Struct, frozen=True, kw_only=True):
    """A task call to create now: its canvas path, its signature and its final positional args;
    ``group_id``/``group_index`` when it is a direct member of a group or chord header."""

    path: str
    signature: Signature
    args: list[Any]
    group_id: str | None = None
    group_index: int | None = None


class Plan(msgspec.Struct, frozen=True, kw_only=True):
    """The planner's answer. ``state`` is None while the workflow is still running."""

    ready: list[ReadyLeaf]
    state: JobState | None = None
    result: Any = None
    error: ErrorInfo | None = None
    failed_path: str | None = None

    @property
    def finished(self) -> bool:
        return self.state is not None


class _Done(msgspec.Struct, frozen=True):
    result: Any


class _Failed(msgspec.Struct, frozen=True):
    leaf: LeafOutcome
    error: ErrorInfo
    path: str


class _Pending(msgspec.Struct, frozen=True):
    ready: list[ReadyLeaf]


_Status = _Done | _Failed | _Pending
_NO_INPUT: Any = object()


def plan(canvas: Canvas, outcomes: Mapping[str, LeafOutcome]) -> Plan:
    """What to create next for ``canvas`` given the ``outcomes`` of every job created so far."""
    status = _evaluate(canvas, "", _NO_INPUT, outcomes)
    if isinstance(status, _Done):
        return Plan(ready=[], state=JobState.SUCCESS, result=status.result)
    if isinstance(status, _Failed):
        state = JobState.REVOKED if status.leaf.state == JobState.REVOKED else JobState.FAILURE
        return Plan(ready=[], state=state, error=status.error, failed_path=status.path)
    return Plan(ready=status.ready)


def _evaluate(
    node: Canvas,
    path: str,
    given: Any,
    outcomes: Mapping[str, LeafOutcome],
    group: tuple[str | None, int] | None = None,
) -> _Status:
    if isinstance(node, Signature):
        return _evaluate_leaf(node, path, given, outcomes, group)
    if isinstance(node, Chain):
        value = given
        for child_path, step in children(node, path):
            status = _evaluate(step, child_path, value, outcomes)
            if not isinstance(status, _Done):
                return status
            value = status.result
        return _Done(value)
    if isinstance(node, Group):
        return _evaluate_group(list(children(node, path)), given, outcomes, node.id)
    if isinstance(node, Chord):
        parts = list(children(node, path))
        header = _evaluate_group(parts[:-1], given, outcomes, node.id)
        if isinstance(header, (_Failed, _Pending)):
            return header
        if node.open:  # its header may still grow: the body waits
            return _Pending([])
        body_path, body = parts[-1]
        return _evaluate(body, body_path, header.result, outcomes)
    raise TypeError(f"not a canvas node: {type(node).__name__}")


def _evaluate_leaf(
    node: Signature,
    path: str,
    given: Any,
    outcomes: Mapping[str, LeafOutcome],
    group: tuple[str | None, int] | None,
) -> _Status:
    outcome = outcomes.get(path)
    if outcome is None:
        args = list(node.args) if node.immutable or given is _NO_INPUT else [given, *node.args]
        group_id, group_index = group if group is not None else (None, None)
        return _Pending([ReadyLeaf(path=path, signature=node, args=args, group_id=group_id, group_index=group_index)])
    if outcome.state == JobState.SUCCESS:
        return _Done(outcome.result)
    if outcome.state in (JobState.FAILURE, JobState.REVOKED):
        error = outcome.error or ErrorInfo(type="TaskRevokedError", message=f"job {outcome.job_id} was revoked")
        return _Failed(outcome, error, path)
    return _Pending([])


def _evaluate_group(
    members: list[tuple[str, Canvas]], given: Any, outcomes: Mapping[str, LeafOutcome], group_id: str | None
) -> _Status:
    results: list[Any] = []
    ready: list[ReadyLeaf] = []
    pending = False
    for index, (member_path, member) in enumerate(members):
        status = _evaluate(member, member_path, given, outcomes, (group_id, index))
        if isinstance(status, _Failed):
            return status
        if isinstance(status, _Pending):
            pending = True
            ready.extend(status.ready)
        else:
            results.append(status.result)
    return _Pending(ready) if pending else _Done(results)
