"""The Celery-compatible Python API: migrate task code by changing an import.

    from entrypoints.celery_compat import create_compatible_task, chain, group, chord

Everything that submits or waits is awaitable on the engine's loop and blocking from a sync
task's worker thread. See the README for the deliberate differences from Celery.
"""

from __future__ import annotations

import builtins

from application.dispatcher import MaxRetriesExceededError
from application.execution import JobCancelled, Reject, SoftTimeLimitExceeded
from application.job_service import EngineStopped
from application.outcomes import TimeLimitExceeded, WorkerLostError
from entrypoints import celery_states as states
from entrypoints.compat import builtins as _builtins
from entrypoints.compat import signals
from entrypoints.compat.app import current_app
from entrypoints.compat.beat import crontab
from entrypoints.compat.binding import NoEngineRunning
from entrypoints.compat.canvas import (
    ImproperlyConfigured,
    Signature,
    chain,
    chord,
    chunks,
    group,
    maybe_signature,
    signature,
    subtask,
    xmap,
    xstarmap,
)
from entrypoints.compat.eager import EagerResult
from entrypoints.compat.embedded import embedded_engine
from entrypoints.compat.exceptions import ChordError, TaskError, TaskRevokedError, UnknownResultError
from entrypoints.compat.results import AsyncResult, GroupResult, ResultSet
from entrypoints.compat.tasks import Request, Task, create_compatible_task, default_registry

task = create_compatible_task
shared_task = create_compatible_task
TimeoutError = builtins.TimeoutError
del _builtins  # imported to register Celery's built-in tasks (celery.map, celery.starmap)

__all__ = [
    "AsyncResult",
    "ChordError",
    "EagerResult",
    "EngineStopped",
    "GroupResult",
    "ImproperlyConfigured",
    "JobCancelled",
    "MaxRetriesExceededError",
    "NoEngineRunning",
    "Reject",
    "Request",
    "ResultSet",
    "Signature",
    "SoftTimeLimitExceeded",
    "Task",
    "TaskError",
    "TaskRevokedError",
    "TimeLimitExceeded",
    "TimeoutError",
    "UnknownResultError",
    "WorkerLostError",
    "chain",
    "chord",
    "chunks",
    "create_compatible_task",
    "crontab",
    "current_app",
    "default_registry",
    "embedded_engine",
    "group",
    "maybe_signature",
    "shared_task",
    "signals",
    "signature",
    "states",
    "subtask",
    "task",
    "xmap",
    "xstarmap",
]
