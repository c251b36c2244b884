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


class _NeedFullPlan(Exception):
    """A sibling of the changed path has a task call never created: the stored jobs are not the full
    outcome of earlier plans (a workflow reopened by a retry), so the whole canvas must be planned."""


_UNKNOWN: Any = object()


def plan_after(canvas: Canvas, outcomes: Mapping[str, LeafOutcome], path: str) -> Plan:
    """:func:`plan` after the job at ``path`` changed, when every earlier plan's jobs were created: the same
    answer, in time independent of the canvas's size for a chain.

    Only the nodes from that leaf up to the root are evaluated. Going up, a chain whose step at ``path``
    is done evaluates the steps after it (those before it are done: it exists); a group or chord header
    whose member at ``path`` is still pending is pending (its other members have nothing new to start),
    and evaluates its other members only once that member is done. Falls back to :func:`plan` when a
    sibling has a task call that was never created.
    """
    ancestors: list[tuple[Canvas, str, str]] = []  # (node, its path, the segment leading down to ``path``)
    node: Canvas = canvas
    node_path = ""
    for segment in path.split(".") if path else []:
        ancestors.append((node, node_path, segment))
        node = _child(node, segment)
        node_path = f"{node_path}.{segment}" if node_path else segment
    outcome = outcomes.get(path)
    if outcome is None or not isinstance(node, Signature):
        return plan(canvas, outcomes)
    status = _evaluate_leaf(node, path, _UNKNOWN, outcomes, None)
    try:
        for parent, parent_path, segment in reversed(ancestors):
            status = _up(parent, parent_path, segment, status, outcomes)
    except _NeedFullPlan:
        return plan(canvas, outcomes)
    return _plan_of(status)


def _plan_of(status: _Status) -> Plan:
    if isinstance(status, _Done):
        return Plan(ready=[], state=JobState.SUCCESS, result=status.result)
    if isinstance(status, _Failed):
        state = JobState.REVOKED if status.leaf.state == JobState.REVOKED else JobState.FAILURE
        return Plan(ready=[], state=state, error=status.error, failed_path=status.path)
    return Plan(ready=status.ready)


def _child(node: Canvas, segment: str) -> Canvas:
    if isinstance(node, Chain):
        return node.steps[int(segment)]
    if isinstance(node, Group):
        return node.members[int(segment)]
    if isinstance(node, Chord):
        return node.body if segment == "b" else node.header[int(segment)]
    raise KeyError(f"a task call has no children ({segment!r})")


def _up(node: Canvas, path: str, segment: str, status: _Status, outcomes: Mapping[str, LeafOutcome]) -> _Status:
    """The status of ``node`` given the ``status`` of its child at ``segment``."""
    prefix = f"{path}." if path else ""
    if isinstance(node, Chain):
        if not isinstance(status, _Done):
            return status
        value = status.result
        for index in range(int(segment) + 1, len(node.steps)):
            status = _evaluate(node.steps[index], f"{prefix}{index}", value, outcomes)
            if not isinstance(status, _Done):
                return status
            value = status.result
        return _Done(value)
    if isinstance(node, Chord) and segment == "b":
        return status
    if not isinstance(status, _Done):
        return status
    members = node.members if isinstance(node, Group) else node.header if isinstance(node, Chord) else []
    group_id = node.id if isinstance(node, (Group, Chord)) else None
    results: list[Any] = []
    pending = False
    changed = int(segment)
    for index, member in enumerate(members):
        if index == changed:
            results.append(status.result)
            continue
        sibling = _evaluate(member, f"{prefix}{index}", _UNKNOWN, outcomes, (group_id, index))
        if isinstance(sibling, _Failed):
            return sibling
        if isinstance(sibling, _Pending):
            if sibling.ready:
                raise _NeedFullPlan
            pending = True
        else:
            results.append(sibling.result)
    if pending:
        return _Pending([])
    if isinstance(node, Group):
        return _Done(results)
    assert isinstance(node, Chord)
    if node.open:
        return _Pending([])
    return _evaluate(node.body, f"{prefix}b", results, outcomes)
