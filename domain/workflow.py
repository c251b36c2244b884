"""A workflow: a stored canvas whose task calls become jobs as the planner unblocks them."""

from __future__ import annotations

from typing import Any

import msgspec

from domain.canvas import Canvas
from domain.job import ErrorInfo
from domain.states import JobState


class Lineage(msgspec.Struct, frozen=True, kw_only=True):
    """Celery's ids for a workflow's first steps: the task that sent it (``parent_id``) and the first
    task of the whole tree it belongs to (``root_id``), and how many ``self.replace`` levels are above
    its jobs. Absent, the first steps have no parent and the canvas's own first task is the root."""

    parent_id: str | None = None
    root_id: str | None = None
    replaced_task_nesting: int = 0


class Workflow(msgspec.Struct, frozen=True, kw_only=True):
    """A submitted chain, group or chord and its outcome.

    ``parent_job_id`` is set when a running job replaced itself with this canvas
    (``self.replace``): that job finishes with this workflow's result, and ``root_id`` names the
    outermost workflow (or lone job) that job belonged to.
    """

    id: str
    canvas: Canvas
    state: JobState = JobState.PENDING
    result: Any = None
    error: ErrorInfo | None = None
    created_at: float
    finished_at: float | None = None
    parent_job_id: str | None = None
    root_id: str | None = None
    lineage: Lineage | None = None
    version: int = 0
    """How many guarded advances were stored (storage counts them, see ``Commit.workflow_versions``): an
    advance planned on an older version was planned on stale outcomes and is refused."""
    idempotency_key: str | None = None
    """The key it was submitted under (HTTP ``Idempotency-Key``, ``idempotency_key=``), stored with it."""

    @property
    def root(self) -> str:
        """The outermost workflow this one belongs to (itself unless it replaced a job)."""
        return self.root_id or self.id

    def finished(self, state: JobState, *, result: Any, error: ErrorInfo | None, now: float) -> Workflow:
        return msgspec.structs.replace(self, state=state, result=result, error=error, finished_at=now)
