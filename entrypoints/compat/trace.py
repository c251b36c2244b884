"""Celery's worker log lines (``celery.app.trace``), written by the engine that runs the jobs.

For each job the engine takes to run it logs, as Celery's worker does, a "received" line on the
``celery.worker.strategy`` logger, then one line on ``celery.app.trace`` saying what the job did:
succeeded (with its run time and return value), raised (ERROR, with the traceback), retry, rejected
(WARNING), or ignored (replaced by a canvas). The formats are Celery's (``LOG_RECEIVED`` ...), the
arguments are given to the logger as Celery gives them (``logger.info(LOG_SUCCESS, context)``), and
every record carries the same context as ``record.data`` (``id``, ``name``, ``args``, ``kwargs`` ...),
``args`` / ``kwargs`` being the job's ``argsrepr`` / ``kwargsrepr`` when it was given them, else a
bounded ``repr()`` of its arguments. The lines go out at INFO (failures at ERROR, rejections at
WARNING): configure those loggers as for Celery's worker.

When those loggers are not enabled for INFO, each job costs one ``isEnabledFor`` check per line.
"""

from __future__ import annotations

import datetime
import logging
import time
import traceback
from typing import Any

from application.execution import Reject, ReplaceRequested, RetryRequested
from domain.job import ErrorInfo, Job
from domain.states import JobState

#: Format string used to log task receipt.
LOG_RECEIVED = "Task %(name)s[%(id)s] received"
#: Format string used to log task success.
LOG_SUCCESS = "Task %(name)s[%(id)s] succeeded in %(runtime)ss: %(return_value)s"
#: Format string used to log task failure.
LOG_FAILURE = "Task %(name)s[%(id)s] %(description)s: %(exc)s"
#: Format string used to log task internal error.
LOG_INTERNAL_ERROR = "Task %(name)s[%(id)s] %(description)s: %(exc)s"
#: Format string used to log task ignored.
LOG_IGNORED = "Task %(name)s[%(id)s] %(description)s"
#: Format string used to log task rejected.
LOG_REJECTED = "Task %(name)s[%(id)s] %(exc)s"
#: Format string used to log task retry.
LOG_RETRY = "Task %(name)s[%(id)s] retry: %(exc)s"

logger = logging.getLogger("celery.app.trace")
"""Celery's ``celery.app.trace`` logger: what each job did."""

strategy_logger = logging.getLogger("celery.worker.strategy")
"""Celery's ``celery.worker.strategy`` logger: each job received."""

#: Celery's ``argsrepr_maxsize`` / ``resultrepr_maxsize``.
REPR_MAXSIZE = 1024


def safe_repr(value: Any, maxsize: int = REPR_MAXSIZE) -> str:
    """``repr(value)`` cut to ``maxsize`` characters, never raising (Celery's ``saferepr``)."""
    try:
        text = repr(value)
    except Exception as exc:
        text = f"<unrepresentable {type(value).__name__}: {exc!r}>"
    return text if len(text) <= maxsize else text[: maxsize - 3] + "..."


class CeleryTrace:
    """The engine's :class:`application.ports.job_trace.JobTrace`: Celery's log lines."""

    def received(self, job: Job) -> None:
        if strategy_logger.isEnabledFor(logging.INFO):
            context = {
                "id": job.id,
                "name": _name(job),
                "args": _args(job),
                "kwargs": _kwargs(job),
                "eta": _iso(job.options.eta),
            }
            _emit(strategy_logger, logging.INFO, LOG_RECEIVED, context)

    def finished(
        self,
        job: Job,
        outcome: Job | ReplaceRequested,
        *,
        value: Any = None,
        exc: BaseException | None = None,
        runtime: float = 0.0,
    ) -> None:
        if isinstance(outcome, ReplaceRequested):  # Celery: replace() raises Ignore
            if logger.isEnabledFor(logging.INFO):
                self._log_error(job, logging.INFO, LOG_IGNORED, "ignored", "Ignore('Replaced by new task')", None)
            return
        state = outcome.state
        if state == JobState.SUCCESS:
            if logger.isEnabledFor(logging.INFO):
                context = {
                    "id": job.id,
                    "name": _name(job),
                    "return_value": safe_repr(value),
                    "runtime": runtime,
                    "args": _args(job),
                    "kwargs": _kwargs(job),
                }
                _emit(logger, logging.INFO, LOG_SUCCESS, context)
        elif isinstance(exc, Reject) and state in (JobState.PENDING, JobState.FAILURE):
            if logger.isEnabledFor(logging.WARNING):
                self._log_error(job, logging.WARNING, LOG_REJECTED, "rejected", safe_repr(exc), exc)
        elif state == JobState.RETRY:
            if logger.isEnabledFor(logging.INFO):
                context = {
                    "id": job.id,
                    "name": _name(job),
                    "exc": _retry_text(exc, outcome),
                    "args": _args(job),
                    "kwargs": _kwargs(job),
                }
                _emit(logger, logging.INFO, LOG_RETRY, context)
        elif state == JobState.FAILURE and logger.isEnabledFor(logging.ERROR):
            if isinstance(exc, RetryRequested):  # retries exhausted: the job failed with its reason
                exc = exc.exc
            shown = safe_repr(exc) if exc is not None else _error_repr(outcome.error)
            self._log_error(job, logging.ERROR, LOG_FAILURE, "raised unexpected", shown, exc, outcome.error)
        # REVOKED (revoked, or past a time limit of an async task cancelled) logs nothing here: Celery's
        # tracer does not either, its worker reports revocations (here: the ``task_revoked`` signal).

    def _log_error(
        self,
        job: Job,
        level: int,
        fmt: str,
        description: str,
        shown: str,
        exc: BaseException | None,
        error: ErrorInfo | None = None,
    ) -> None:
        """Celery's ``TraceInfo._log_error``: the line with the exception's traceback (the task's own,
        or as stored when the exception object is not at hand)."""
        if exc is not None:
            exc_info: Any = (type(exc), exc, exc.__traceback__)
            text = "".join(_format(exc))
        else:
            exc_info = None
            text = (error.traceback or "") if error is not None else ""
        context = {
            "hostname": _hostname(),
            "id": job.id,
            "name": _name(job),
            "exc": shown,
            "traceback": text,
            "args": _args(job),
            "kwargs": _kwargs(job),
            "description": description,
            "internal": False,
        }
        if level < logging.WARNING:  # Celery's policies: a traceback for rejections and failures only
            exc_info = None
        _emit(logger, level, fmt, context, exc_info)


def _emit(target: logging.Logger, level: int, fmt: str, context: dict[str, Any], exc_info: Any = None) -> None:
    """``target.log(level, fmt, context, exc_info=exc_info, extra={"data": context})`` without looking up
    the caller's frame (two lines per job, on the engine's loop): the record names this module."""
    record = target.makeRecord(target.name, level, __file__, 0, fmt, (context,), exc_info, None, {"data": context})
    target.handle(record)


def _name(job: Job) -> str:
    """The name the lines show: ``shadow`` when given (Celery's ``get_task_name``)."""
    return job.options.shadow or job.task


def _args(job: Job) -> str:
    return job.options.argsrepr or safe_repr(job.args)


def _kwargs(job: Job) -> str:
    return job.options.kwargsrepr or safe_repr(job.kwargs)


def _iso(epoch: float | None) -> str | None:
    return None if epoch is None else datetime.datetime.fromtimestamp(epoch, datetime.UTC).isoformat()


def _hostname() -> str:
    from entrypoints.compat.tasks import HOSTNAME

    return HOSTNAME


def _format(exc: BaseException) -> list[str]:
    return traceback.format_exception(type(exc), exc, exc.__traceback__)


def _error_repr(error: ErrorInfo | None) -> str:
    """A stored error shown as ``repr()`` shows the exception it was built from."""
    if error is None:
        return "None"
    if error.args is None:
        return safe_repr(error.message)
    text = f"{error.type}({', '.join(safe_repr(arg) for arg in error.args)})"
    return text if len(text) <= REPR_MAXSIZE else text[: REPR_MAXSIZE - 3] + "..."


def _retry_text(exc: BaseException | None, outcome: Job) -> str:
    """Celery's ``str(Retry)``: when the next attempt is due, and why."""
    reason = exc.exc if isinstance(exc, RetryRequested) else exc
    delay = max(outcome.due_at - time.time(), 0.0)
    when = f"in {delay:.3g}s"
    return f"Retry {when}: {safe_repr(reason)}" if reason is not None else f"Retry {when}"
