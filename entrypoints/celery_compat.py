"""The Celery-compatible Python API: migrate task code by changing an import.

    from entrypoints.celery_compat import create_compatible_task, chain, group, chord

Everything that submits or waits is awaitable on the engine's loop and blocking from a sync
task's worker thread. See the README for the deliberate differences from Celery.
"""

from __future__ import annotations

from application.dispatcher import MaxRetriesExceededError
from application.execution import JobCancelled
from application.job_service import EngineStopped
from application.outcomes import TimeLimitExceeded, WorkerLostError
from entrypoints import celery_states as states
from entrypoints.compat.binding import NoEngineRunning
from entrypoints.compat.canvas import Signature, chain, chord, group, signature
from entrypoints.compat.embedded import embedded_engine
from entrypoints.compat.results import (
    AsyncResult,
    ChordError,
    GroupResult,
    ResultSet,
    TaskError,
    TaskRevokedError,
    UnknownResultError,
)
from entrypoints.compat.tasks import Request, Task, create_compatible_task, default_registry

task = create_compatible_task
shared_task = create_compatible_task

__all__ = [
    "AsyncResult",
    "ChordError",
    "EngineStopped",
    "GroupResult",
    "JobCancelled",
    "MaxRetriesExceededError",
    "NoEngineRunning",
    "Request",
    "ResultSet",
    "Signature",
    "Task",
    "TaskError",
    "TaskRevokedError",
    "TimeLimitExceeded",
    "UnknownResultError",
    "WorkerLostError",
    "chain",
    "chord",
    "create_compatible_task",
    "default_registry",
    "embedded_engine",
    "group",
    "shared_task",
    "signature",
    "states",
    "task",
]
