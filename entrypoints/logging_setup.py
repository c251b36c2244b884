"""Logging: JSON lines in production (for a log collector), readable text in development.

Both modes show the fields of the ``geekblog.jobs`` line of each job (``entrypoints.job_log``) and tag what
a task logs while it runs with its job's id (``job_id``), on whichever logger and thread it logs.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import msgspec

from application.execution import current_job
from entrypoints.job_log import FIELDS


class JobIdFilter(logging.Filter):
    """Sets ``record.job_id``: the id of the job whose task is running where the record was made, else None."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "job_id", None) is None:
            context = current_job.get()
            record.job_id = None if context is None else context.job.id
        return True


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    fields = getattr(record, FIELDS, None)
    return fields if isinstance(fields, dict) else {}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the job's fields or id, and the exception
    text if any."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        job_id = getattr(record, "job_id", None)
        if job_id is not None:
            entry["job_id"] = job_id
        entry.update(_fields(record))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return msgspec.json.encode(entry).decode()


class TextFormatter(logging.Formatter):
    """``time level logger: message``, with ``[job <id>]`` after the logger for what a task logs."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s%(job_tag)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        job_id = getattr(record, "job_id", None)
        record.job_tag = f" [job {job_id}]" if job_id is not None and not _fields(record) else ""
        return super().format(record)


def configure_logging(mode: str, level: str | None = None) -> None:
    """The root logger for ``mode``, at ``level`` (``GEEKBLOG_LOG_LEVEL``; unset: INFO in production,
    DEBUG in development)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if mode == "production" else TextFormatter())
    handler.addFilter(JobIdFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level or ("INFO" if mode == "production" else "DEBUG"))
    for noisy in ("asyncio", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
