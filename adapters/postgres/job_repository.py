"""The PostgreSQL job repository: jobs and workflows in a database that several engines may share.

Writes go through :class:`~adapters.postgres.writer.PostgresWriter` (this process's one writing
connection, group commit, call order kept); reads take any connection of its pool, and its blocking
reads for plain threads (:attr:`PostgresJobRepository.blocking`) a pool of their own. Claims are
``SELECT … FOR UPDATE SKIP LOCKED`` in the database itself (no index in memory: another process may
change the queue at any time), so the order is the one SQLite's engine keeps: highest priority first,
then earliest ``due_at``, then first stored.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any, Final

import asyncpg

from adapters.postgres.blocking import PostgresBlockingReader
from adapters.postgres.errors import one_line
from adapters.postgres.reads import children_of, job_by_id, jobs_by_ids, workflow_by_id
from adapters.postgres.rows import INT64, Claimed, CommitRows, encoded, job_from_row
from adapters.postgres.schema import (
    FORGET_SQL,
    IDEMPOTENCY_COLUMNS,
    JOB_SELECT,
    LEASED_SQL,
    NEXT_DUE_IN_SQL,
    NEXT_DUE_SQL,
    PURGE_JOBS_SQL,
    PURGE_TICKS_SQL,
    PURGE_WORKFLOWS_SQL,
    QUEUE_DEPTHS_SQL,
)
from adapters.postgres.writer import Kind, PostgresWriter
from application.ports import Commit, IdempotencyKey, JobFilter, JobPage, JobRepository
from domain.errors import NotStorable
from domain.job import Job, Progress
from domain.workflow import Workflow

__all__ = ["PostgresJobRepository"]

_WORKFLOW_JOBS: Final = f"SELECT {JOB_SELECT} FROM jobs WHERE workflow_id = $1 ORDER BY seq"
_KEY_SQL: Final = f"SELECT {IDEMPOTENCY_COLUMNS} FROM idempotency_keys WHERE key = $1"


class PostgresJobRepository(JobRepository):
    """Jobs and workflows in PostgreSQL, written by one writer task per process with group commit.

    There is no lock file: other engines may use the same database, so a lease found at start may be
    another engine's, alive (see ``EngineSettings.exclusive_storage``).
    """

    exclusive = False
    """Other engines (processes, machines) may use the same database at the same time."""

    def __init__(
        self, url: str, *, pool_size: int = 10, connect_timeout: float = 10.0, command_timeout: float = 30.0
    ) -> None:
        self._writer = PostgresWriter(
            url, pool_size=pool_size, connect_timeout=connect_timeout, command_timeout=command_timeout
        )
        self._blocking = PostgresBlockingReader(
            url, where=self._writer.where, connect_timeout=connect_timeout, command_timeout=command_timeout
        )

    def __repr__(self) -> str:
        return f"PostgresJobRepository({self._writer.where!r})"

    @property
    def writer(self) -> PostgresWriter:
        """The database's writer and pool, shared by the repositories of the other tables."""
        return self._writer

    @property
    def blocking(self) -> PostgresBlockingReader:
        """Blocking reads of this database for plain threads (Celery's synchronous API), open while the
        repository is."""
        return self._blocking

    @property
    def where(self) -> str:
        """The database as messages name it, without its password."""
        return self._writer.where

    @property
    def schema_found(self) -> int | None:
        """The schema version the last :meth:`open` found (0 for a new database)."""
        return self._writer.schema_found

    @property
    def migrations_applied(self) -> int:
        """How many migrations the last :meth:`open` applied itself."""
        return self._writer.migrations_applied

    @property
    def transactions(self) -> int:
        """Transactions the writer committed (a batch is one; a batch retried op by op is several)."""
        return self._writer.transactions

    async def open(self) -> None:
        """Connect and migrate (under an advisory lock, so engines starting together migrate once), then
        open the blocking reads."""
        await self._writer.open()
        try:
            await self._blocking.open()
        except BaseException:
            await self._writer.close()
            raise

    async def close(self) -> None:
        """Close the blocking reads, finish the writes already queued, then close the pool."""
        try:
            await self._blocking.close()
        finally:
            await self._writer.close()

    # --- writes -----------------------------------------------------------------------------------------

    async def commit(self, commit: Commit) -> None:
        self._writer.check_open()
        if commit.guard is None and not commit.jobs and not commit.workflows:
            return
        rows = CommitRows(commit)
        try:
            await self._writer.submit(Kind.COMMIT, rows)
        except (asyncpg.DataError, asyncpg.InterfaceError) as exc:
            # A value PostgreSQL refuses (a NUL in a text column) or the driver cannot send: only this commit.
            if isinstance(exc, (asyncpg.DataError, ValueError)):
                raise NotStorable(f"PostgreSQL cannot store it: {one_line(exc)}") from None
            raise

    async def claim(
        self, *, owner: str, now: float, limit: int, lease_until: float, queues: Mapping[str, int] | None = None
    ) -> list[Job]:
        self._writer.check_open()
        if queues is not None:
            queues = {name: room for name, room in queues.items() if room > 0}
        if limit <= 0 or queues == {}:
            return []
        payload: tuple[Any, ...] = (float(now), owner, float(lease_until), limit)
        if queues is not None:
            payload += (list(queues), list(queues.values()))
        claimed: list[Claimed] = await self._writer.submit(Kind.CLAIM, payload)
        if any(item.job.concurrency is not None or item.job.rate_interval is not None for item in claimed):
            put_back = set(await self._writer.submit(Kind.CONTROLS, (owner, float(now), claimed)))
            return [item.job for item in claimed if item.job.id not in put_back]
        return [item.job for item in claimed]

    async def save_progress(self, job_id: str, owner: str, progress: Progress) -> bool:
        self._writer.check_open()
        saved: bool = await self._writer.submit(Kind.PROGRESS, (encoded(progress), job_id, owner))
        return saved

    async def renew_leases(self, owner: str, job_ids: list[str], lease_until: float) -> None:
        self._writer.check_open()
        if not job_ids:
            return
        await self._writer.submit(Kind.RENEW, (float(lease_until), list(job_ids), owner))

    async def forget(self, job_id: str) -> bool:
        self._writer.check_open()
        deleted: int = await self._writer.submit(Kind.EXECUTE, [(FORGET_SQL, (job_id,))])
        return deleted > 0

    async def purge(self, finished_before: float) -> int:
        self._writer.check_open()
        cutoff = (float(finished_before),)
        workflows: int = await self._writer.submit(Kind.EXECUTE, [(PURGE_WORKFLOWS_SQL, cutoff)])
        jobs: int = await self._writer.submit(Kind.EXECUTE, [(PURGE_JOBS_SQL, cutoff)])
        await self._writer.submit(Kind.EXECUTE, [(PURGE_TICKS_SQL, cutoff)])
        return workflows + jobs

    # --- reads --------------------------------------------------------------------------------------------

    async def get(self, job_id: str) -> Job | None:
        return await job_by_id(self._writer.fetch, job_id)

    async def get_many(self, job_ids: Sequence[str]) -> dict[str, Job]:
        return await jobs_by_ids(self._writer.fetch, job_ids)

    async def children(self, job_id: str) -> list[Job]:
        return await children_of(self._writer.fetch, job_id)

    async def get_workflow(self, workflow_id: str) -> Workflow | None:
        return await workflow_by_id(self._writer.fetch, workflow_id)

    async def idempotency_key(self, key: str) -> IdempotencyKey | None:
        rows = await self._writer.fetch(_KEY_SQL, key)
        if not rows:
            return None
        key, fingerprint, kind, target, created_at = rows[0]
        return IdempotencyKey(key=key, fingerprint=fingerprint, kind=kind, target=target, created_at=created_at)

    async def workflow_jobs(self, workflow_id: str) -> list[Job]:
        return [job_from_row(row) for row in await self._writer.fetch(_WORKFLOW_JOBS, workflow_id)]

    async def list_jobs(self, filter: JobFilter, *, limit: int, cursor: str | None = None) -> JobPage:
        limit = max(limit, 0)
        clauses: list[str] = []
        params: list[Any] = []
        if cursor:
            params.append(min(max(int(cursor), INT64.start), INT64.stop - 1))  # any integer reads as a position
            clauses.append(f"seq < ${len(params)}")
        if filter.state is not None:
            params.append(str(filter.state))
            clauses.append(f"state = ${len(params)}")
        if filter.task is not None:
            params.append(filter.task)
            clauses.append(f"task = ${len(params)}")
        if filter.workflow_id is not None:
            params.append(filter.workflow_id)
            clauses.append(f"(workflow_id = ${len(params)} OR root_id = ${len(params)})")
        if filter.schedule is not None:
            params.append(filter.schedule)
            clauses.append(f"id IN (SELECT job_id FROM schedule_ticks WHERE schedule = ${len(params)})")
        if filter.queue is not None:
            params.append(filter.queue)
            clauses.append(f"queue = ${len(params)}")
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        params.append(limit + 1)
        rows = await self._writer.fetch(
            f"SELECT {JOB_SELECT}, seq FROM jobs {where} ORDER BY seq DESC LIMIT ${len(params)}", *params
        )
        more = len(rows) > limit
        rows = rows[:limit]
        next_cursor = str(rows[-1][-1]) if more and rows else None
        return JobPage(items=[job_from_row(row) for row in rows], next_cursor=next_cursor)

    async def next_due_at(self, queues: Collection[str] | None = None) -> float | None:
        if queues is None:
            due: float | None = await self._writer.fetchval(NEXT_DUE_SQL)
        else:
            due = await self._writer.fetchval(NEXT_DUE_IN_SQL, list(queues))
        return due

    async def queue_depths(self) -> dict[str, int]:
        return {row[0]: row[1] for row in await self._writer.fetch(QUEUE_DEPTHS_SQL)}

    async def leased_jobs(self, *, expired_before: float) -> list[Job]:
        return [job_from_row(row) for row in await self._writer.fetch(LEASED_SQL, float(expired_before))]

    async def count_by_state(self, states: Collection[str] | None = None) -> dict[str, int]:
        if states is None:
            rows = await self._writer.fetch("SELECT state, count(*) FROM jobs GROUP BY state")
        else:
            rows = await self._writer.fetch(
                "SELECT state, count(*) FROM jobs WHERE state = ANY($1::text[]) GROUP BY state", list(states)
            )
        return {row[0]: row[1] for row in rows}
