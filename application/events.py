"""Events the engine publishes when a job or workflow changes state or reports progress."""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from domain.job import ErrorInfo, Job, Progress
from domain.states import is_terminal
from domain.workflow import Workflow


class Event(msgspec.Struct, frozen=True, kw_only=True):
    """A change seen by subscribers (``AsyncResult.get``, SSE streams, metrics).

    ``state`` is the lifecycle state, or the custom state of a progress update (``PROGRESS``).
    """

    kind: Literal["job", "workflow", "project"]
    id: str
    state: str
    at: float
    task: str | None = None
    workflow_id: str | None = None
    progress: Progress | None = None
    result: Any = None
    error: ErrorInfo | None = None
    attempts: int = 0
    started_at: float | None = None
    root_id: str | None = None
    concurrency_key: str | None = None
    """The job's concurrency key: a job that stops holding one lets the jobs waiting on it start."""
    due_at: float | None = None
    """When the job could start (submitted, or its ETA or retry time): its queue wait ends when it starts."""
    queue: str | None = None
    """The named queue the job waits in."""
    seq: int = 0
    """Set by the event bus: the order of publication in this process (0 before), which event streams send as
    their ``id`` and resume from (``Last-Event-ID``)."""

    @property
    def terminal(self) -> bool:
        return self.progress is None and is_terminal(self.state)

    @classmethod
    def of_job(cls, job: Job, at: float) -> Event:
        return cls(
            kind="job",
            id=job.id,
            state=job.state.value,
            at=at,
            task=job.task,
            workflow_id=job.workflow_id,
            result=job.result,
            error=job.error,
            attempts=job.attempts,
            started_at=job.started_at,
            root_id=job.root_id,
            concurrency_key=job.options.concurrency_key,
            due_at=job.due_at,
            queue=job.queue,
        )

    @classmethod
    def of_progress(cls, job: Job, progress: Progress, at: float) -> Event:
        return cls(
            kind="job",
            id=job.id,
            state=progress.state,
            at=at,
            task=job.task,
            workflow_id=job.workflow_id,
            progress=progress,
            root_id=job.root_id,
        )

    @classmethod
    def of_workflow(cls, workflow: Workflow, at: float) -> Event:
        return cls(
            kind="workflow",
            id=workflow.id,
            state=workflow.state.value,
            at=at,
            result=workflow.result,
            error=workflow.error,
            root_id=workflow.root_id,
        )
