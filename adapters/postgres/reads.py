"""The point reads of jobs and workflows (by id, by ids, a job's children, a workflow), written once for the
two ways this adapter reads: the repository's async reads on the engine's loop, and the blocking reads of
:mod:`~adapters.postgres.blocking` on a loop of their own. Each takes the ``fetch`` of the side it runs on."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final, TypeAlias

import asyncpg

from adapters.postgres.rows import job_from_row, workflow_from_row
from adapters.postgres.schema import JOB_SELECT, WORKFLOW_SELECT
from domain.job import Job
from domain.workflow import Workflow

__all__ = ["Fetch", "children_of", "job_by_id", "jobs_by_ids", "workflow_by_id"]

Fetch: TypeAlias = Callable[..., Awaitable[list[asyncpg.Record]]]
"""``fetch(sql, *args)``: the rows of one read, storage errors already read as the application's."""

_BY_ID: Final = f"SELECT {JOB_SELECT} FROM jobs WHERE id = $1"
_BY_IDS: Final = f"SELECT {JOB_SELECT} FROM jobs WHERE id = ANY($1::text[])"
_CHILDREN: Final = f"SELECT {JOB_SELECT} FROM jobs WHERE parent_id = $1 ORDER BY seq"
_WORKFLOW: Final = f"SELECT {WORKFLOW_SELECT} FROM workflows WHERE id = $1"


async def job_by_id(fetch: Fetch, job_id: str) -> Job | None:
    rows = await fetch(_BY_ID, job_id)
    return job_from_row(rows[0]) if rows else None


async def jobs_by_ids(fetch: Fetch, job_ids: Sequence[str]) -> dict[str, Job]:
    """The jobs among ``job_ids`` that exist, in the order of ``job_ids``, in one read."""
    if not job_ids:
        return {}
    rows = await fetch(_BY_IDS, list(dict.fromkeys(job_ids)))
    by_id = {row[0]: job_from_row(row) for row in rows}
    return {job_id: by_id[job_id] for job_id in job_ids if job_id in by_id}


async def children_of(fetch: Fetch, job_id: str) -> list[Job]:
    """The jobs ``job_id`` started (its Celery children), in the order they were stored."""
    return [job_from_row(row) for row in await fetch(_CHILDREN, job_id)]


async def workflow_by_id(fetch: Fetch, workflow_id: str) -> Workflow | None:
    rows: list[Any] = await fetch(_WORKFLOW, workflow_id)
    return workflow_from_row(rows[0]) if rows else None
