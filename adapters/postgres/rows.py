"""Row mapping: jobs and workflows to the tuples the upserts bind, rows read back to jobs and workflows, and
a commit encoded before it reaches the writer (so what cannot be stored is refused before anything is)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final, NamedTuple

import asyncpg
import msgspec

from adapters.postgres.errors import one_line
from adapters.postgres.schema import JOB_COLUMNS
from application.ports import Commit
from domain.canvas import Canvas
from domain.errors import NotStorable
from domain.job import NO_OPTIONS, CallOptions, ErrorInfo, Job, Progress
from domain.states import JobState
from domain.workflow import Lineage, Workflow

_encoder: Final = msgspec.json.Encoder()
_args_decoder: Final = msgspec.json.Decoder(list[Any])
_kwargs_decoder: Final = msgspec.json.Decoder(dict[str, Any])
_any_decoder: Final = msgspec.json.Decoder()
_error_decoder: Final = msgspec.json.Decoder(ErrorInfo)
_progress_decoder: Final = msgspec.json.Decoder(Progress)
_canvas_decoder: Final = msgspec.json.Decoder(Canvas)
_options_decoder: Final = msgspec.json.Decoder(CallOptions)
_lineage_decoder: Final = msgspec.json.Decoder(Lineage)

INT64: Final = range(-(2**63), 2**63)
"""What a ``BIGINT`` column holds."""

_ENCODING_ERRORS: Final = (TypeError, ValueError, OverflowError, msgspec.EncodeError)


def to_json(value: Any) -> str:
    return _encoder.encode(value).decode()


def encoded(value: Any) -> str:
    """``value`` as JSON text, or :class:`NotStorable` saying why it cannot be."""
    try:
        return _encoder.encode(value).decode()
    except _ENCODING_ERRORS as exc:
        raise NotStorable(f"cannot be encoded as JSON: {one_line(exc)}") from None


def _json_or_null(value: Any) -> str | None:
    return None if value is None else _encoder.encode(value).decode()


def _bigint(value: int | None, name: str) -> int | None:
    if value is not None and value not in INT64:
        raise NotStorable(f"{name}: an integer outside the 64-bit signed range cannot be stored")
    return value


def job_row(job: Job) -> tuple[Any, ...]:
    return (
        job.id,
        job.task,
        to_json(job.args),
        to_json(job.kwargs),
        str(job.state),
        _bigint(job.priority, "priority"),
        job.due_at,
        job.created_at,
        job.started_at,
        job.finished_at,
        _bigint(job.attempts, "attempts"),
        _bigint(job.max_retries, "max_retries"),
        job.time_limit,
        job.retry_on_worker_lost,
        _json_or_null(job.result),
        _json_or_null(job.error),
        _json_or_null(job.progress),
        job.workflow_id,
        job.node,
        job.lease_owner,
        job.lease_expires_at,
        job.waiting_on,
        job.root_id,
        None if job.options == NO_OPTIONS else to_json(job.options),
        job.options.parent_id,
        job.queue,
        *(job.concurrency or (None, None)),
        job.rate_interval,
    )


def job_from_row(row: asyncpg.Record) -> Job:
    return Job(
        id=row[0],
        task=row[1],
        args=_args_decoder.decode(row[2]),
        kwargs=_kwargs_decoder.decode(row[3]),
        state=JobState(row[4]),
        priority=row[5],
        due_at=row[6],
        created_at=row[7],
        started_at=row[8],
        finished_at=row[9],
        attempts=row[10],
        max_retries=row[11],
        time_limit=row[12],
        retry_on_worker_lost=row[13],
        result=None if row[14] is None else _any_decoder.decode(row[14]),
        error=None if row[15] is None else _error_decoder.decode(row[15]),
        progress=None if row[16] is None else _progress_decoder.decode(row[16]),
        workflow_id=row[17],
        node=row[18],
        lease_owner=row[19],
        lease_expires_at=row[20],
        waiting_on=row[21],
        root_id=row[22],
        options=NO_OPTIONS if row[23] is None else _options_decoder.decode(row[23]),
    )


def workflow_row(workflow: Workflow) -> tuple[Any, ...]:
    return (
        workflow.id,
        to_json(workflow.canvas),
        str(workflow.state),
        _json_or_null(workflow.result),
        _json_or_null(workflow.error),
        workflow.created_at,
        workflow.finished_at,
        workflow.parent_job_id,
        workflow.root_id,
        _json_or_null(workflow.lineage),
        workflow.version,
        workflow.idempotency_key,
    )


def workflow_from_row(row: asyncpg.Record) -> Workflow:
    return Workflow(
        id=row[0],
        canvas=_canvas_decoder.decode(row[1]),
        state=JobState(row[2]),
        result=None if row[3] is None else _any_decoder.decode(row[3]),
        error=None if row[4] is None else _error_decoder.decode(row[4]),
        created_at=row[5],
        finished_at=row[6],
        parent_job_id=row[7],
        root_id=row[8],
        lineage=None if row[9] is None else _lineage_decoder.decode(row[9]),
        version=row[10],
        idempotency_key=row[11],
    )


class Claimed(NamedTuple):
    """A job a claim took, and what it was before (to put it back if its concurrency key has no room)."""

    job: Job
    was_state: str
    was_started_at: float | None
    was_progress: str | None
    seq: int = 0
    """Its place in submission order (a key's waiting jobs start in that order)."""


def claimed_jobs(rows: Sequence[asyncpg.Record]) -> list[Claimed]:
    """Claimed rows (job columns, ``seq``, then the job's state, started_at and progress before the claim) in
    claim order: priority, due time, first stored."""
    seq = len(JOB_COLUMNS)
    ordered = sorted(rows, key=lambda row: (-row[5], row[6], row[seq]))
    return [Claimed(job_from_row(row), row[seq + 1], row[seq + 2], row[seq + 3], row[seq]) for row in ordered]


class CommitRows:
    """A commit, encoded by the caller: rows to upsert, and each job's (id, state, lease_owner) for guards."""

    __slots__ = (
        "guard",
        "idempotency",
        "job_keys",
        "job_rows",
        "stale_version",
        "tick",
        "workflow_rows",
        "workflow_versions",
    )

    def __init__(self, commit: Commit) -> None:
        self.guard = commit.guard
        self.tick = commit.tick
        self.workflow_versions = commit.workflow_versions
        self.stale_version = commit.stale_version  # the port's check of those versions
        try:
            self.workflow_rows = [workflow_row(workflow) for workflow in commit.workflows]
            self.job_rows = [job_row(job) for job in commit.jobs]
        except NotStorable:
            raise
        except _ENCODING_ERRORS as exc:
            raise NotStorable(f"cannot be encoded as JSON: {one_line(exc)}") from None
        self.job_keys = [(job.id, str(job.state), job.lease_owner) for job in commit.jobs]
        held = commit.idempotency
        self.idempotency = (
            None if held is None else (held.key, held.fingerprint, held.kind, held.target, float(held.created_at))
        )
