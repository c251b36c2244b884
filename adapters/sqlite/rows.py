"""Row mapping: jobs and workflows to the tuples the upserts bind, and rows read back to jobs and workflows."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import msgspec

from adapters.sqlite.errors import one_line
from application.ports import Commit
from domain.canvas import Canvas
from domain.errors import NotStorable
from domain.job import NO_OPTIONS, CallOptions, ErrorInfo, Job, Progress
from domain.states import QUEUED_STATES, JobState
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


def to_json(value: Any) -> str:
    return _encoder.encode(value).decode()


def _json_or_null(value: Any) -> str | None:
    return None if value is None else _encoder.encode(value).decode()


def job_row(job: Job) -> tuple[Any, ...]:
    return (
        job.id,
        job.task,
        to_json(job.args),
        to_json(job.kwargs),
        str(job.state),
        job.priority,
        job.due_at,
        job.created_at,
        job.started_at,
        job.finished_at,
        job.attempts,
        -1 if job.max_retries is None else job.max_retries,
        job.time_limit,
        int(job.retry_on_worker_lost),
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
    )


def job_from_row(row: Sequence[Any]) -> Job:
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
        max_retries=None if row[11] < 0 else row[11],
        time_limit=row[12],
        retry_on_worker_lost=bool(row[13]),
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


def workflow_from_row(row: Sequence[Any]) -> Workflow:
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


def claimed_jobs(rows: Sequence[Sequence[Any]], ids: list[str]) -> list[Job]:
    # RETURNING order is unspecified: put the jobs back in the order they were taken from the index.
    position = {job_id: index for index, job_id in enumerate(ids)}
    return [job_from_row(row) for row in sorted(rows, key=lambda row: position[row[0]])]


class CommitRows:
    """A commit, encoded by the caller: rows to upsert, and each job's (id, state, lease_owner) for guards."""

    __slots__ = (
        "guard",
        "idempotency",
        "job_keys",
        "job_rows",
        "queue_changes",
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
        except (TypeError, ValueError, OverflowError, msgspec.EncodeError) as exc:
            raise NotStorable(f"cannot be encoded as JSON: {one_line(exc)}") from None
        self.job_keys = [(job.id, str(job.state), job.lease_owner) for job in commit.jobs]
        held = commit.idempotency
        self.idempotency = (
            None if held is None else (held.key, held.fingerprint, held.kind, held.target, held.created_at)
        )
        self.queue_changes = [
            (
                job.id,
                job.priority if job.state in QUEUED_STATES else None,
                job.due_at,
                job.queue,
                job.concurrency,
                job.state == JobState.STARTED,
                None if (interval := job.rate_interval) is None else (job.task, interval),
            )
            for job in commit.jobs
        ]
