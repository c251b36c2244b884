"""Celery's result graph for a stored canvas: the handle of its final call, with ``.parent`` links back.

Celery returns, for a chain, the result of its last task (``.parent`` is the step before); for a
group a ``GroupResult`` of its members; for a chord the result of its body, whose parent is the
header's ``GroupResult``. The same objects are built here from the frozen canvas a workflow stores,
each knowing its workflow, so a handle on a step that has not been created yet still resolves.
"""

from __future__ import annotations

from domain import canvas as model
from entrypoints.compat.results import AsyncResult, GroupResult


def result_of(node: model.Canvas, workflow_id: str | None, parent: AsyncResult | None = None) -> AsyncResult:
    """The handle of ``node``'s outcome; the top one (``parent`` None at the root) is the canvas's own."""
    handle = _build(node, workflow_id, parent)
    handle.final = workflow_id is not None
    return handle


def _build(node: model.Canvas, workflow_id: str | None, parent: AsyncResult | None) -> AsyncResult:
    if isinstance(node, model.Signature):
        return AsyncResult(node.id or "", parent=parent, workflow_id=workflow_id)
    if isinstance(node, model.Chain):
        handle = parent
        for step in node.steps:
            handle = _build(step, workflow_id, handle)
        assert handle is not None
        return handle
    if isinstance(node, model.Group):
        members = [_build(member, workflow_id, None) for member in node.members]
        return GroupResult(node.id or "", members, parent=parent, workflow_id=workflow_id)
    header = GroupResult(
        node.id or "",
        [_build(member, workflow_id, None) for member in node.header],
        parent=parent,
        workflow_id=workflow_id,
    )
    return _build(node.body, workflow_id, header)


def step_result(node: model.Canvas, workflow_id: str) -> AsyncResult:
    """The handle of one part of a stored workflow (not the canvas's own: its ``get()`` waits for that part)."""
    return _build(node, workflow_id, None)
