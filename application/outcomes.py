"""How an exception raised by a task becomes the job's next state: retry, failure, revocation."""

from __future__ import annotations

import traceback

from domain.job import ErrorInfo, Job


class TimeLimitExceeded(Exception):
    """The job ran past its hard time limit and was stopped."""


class WorkerLostError(Exception):
    """The process running the job died, and the job may not run again."""


def error_info(exc: BaseException) -> ErrorInfo:
    """The stored form of an exception: its type name, its message and its formatted traceback."""
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return ErrorInfo(type=type(exc).__name__, message=str(exc), traceback=text)


def revoked_error(job: Job) -> ErrorInfo:
    """What a revoked job reports as its error (Celery's ``TaskRevokedError``)."""
    return ErrorInfo(type="TaskRevokedError", message=f"job {job.id} ({job.task}) was revoked")
