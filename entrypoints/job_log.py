"""The service log's line for each job run: one structured record per finished attempt on ``geekblog.jobs``.

Celery's worker lines (``entrypoints.compat.trace``) are kept for teams that grep them; this line is the
one to query: its fields (``task``, ``job_id``, ``state``, ``duration``, ``attempt``, ``error_type``,
``error_message``) are keys of the JSON line in production and ``key=value`` pairs of the text line in
development. The task's traceback follows at DEBUG (``GEEKBLOG_LOG_LEVEL=DEBUG``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from application.execution import ReplaceRequested
from application.ports.job_trace import JobTrace
from domain.job import Job
from domain.states import JobState

logger = logging.getLogger("geekblog.jobs")
"""One INFO line per job attempt that ended (WARNING for a failure), its traceback at DEBUG."""

FIELDS = "job"
"""The attribute of each record holding its fields (``record.job``), which the formatters show."""


def job_fields(job: Job, outcome: Job | ReplaceRequested, runtime: float) -> dict[str, Any]:
    """What the line says of one attempt of ``job`` that ended as ``outcome``."""
    state = "REPLACED" if isinstance(outcome, ReplaceRequested) else outcome.state.value
    error = None if isinstance(outcome, ReplaceRequested) else outcome.error
    fields: dict[str, Any] = {
        "task": job.task,
        "job_id": job.id,
        "state": state,
        "duration": round(runtime, 6),
        "attempt": job.attempts,
    }
    if error is not None and state != "SUCCESS":
        fields["error_type"] = error.type
        fields["error_message"] = error.message
    return fields


class JobLog:
    """The engine's :class:`~application.ports.job_trace.JobTrace` that writes the ``geekblog.jobs`` lines."""

    def received(self, job: Job) -> None:
        return None

    def finished(
        self,
        job: Job,
        outcome: Job | ReplaceRequested,
        *,
        value: Any = None,
        exc: BaseException | None = None,
        runtime: float = 0.0,
    ) -> None:
        failed = isinstance(outcome, Job) and outcome.state == JobState.FAILURE
        level = logging.WARNING if failed else logging.INFO
        if not logger.isEnabledFor(level):  # then DEBUG is not either: nothing to build
            return
        fields = job_fields(job, outcome, runtime)
        text = " ".join(f"{key}={value}" for key, value in fields.items() if not key.startswith("error_"))
        if "error_message" in fields:
            text += f" error={fields['error_type']}: {fields['error_message']}"
        _emit(level, f"job {fields['state'].lower()}: {text}", fields)
        if exc is not None and "error_type" in fields and logger.isEnabledFor(logging.DEBUG):
            _emit(logging.DEBUG, f"job {job.id} traceback", fields, (type(exc), exc, exc.__traceback__))


def _emit(level: int, message: str, fields: dict[str, Any], exc_info: Any = None) -> None:
    record = logger.makeRecord(logger.name, level, __file__, 0, message, (), exc_info, None, {FIELDS: fields})
    logger.handle(record)


class Traces:
    """Several traces told the same, in order: the dispatcher has one ``trace``."""

    def __init__(self, traces: Sequence[JobTrace]) -> None:
        self.traces = tuple(traces)

    def received(self, job: Job) -> None:
        for trace in self.traces:
            trace.received(job)

    def finished(
        self,
        job: Job,
        outcome: Job | ReplaceRequested,
        *,
        value: Any = None,
        exc: BaseException | None = None,
        runtime: float = 0.0,
    ) -> None:
        for trace in self.traces:
            trace.finished(job, outcome, value=value, exc=exc, runtime=runtime)
