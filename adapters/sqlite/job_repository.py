"""The SQLite job repository: jobs and workflows as SQL on top of the database's one writer.

Writes go through :class:`~adapters.sqlite.writer.SqliteWriter` (one writer task, group commit; see
there); reads run inline on its reader connection, and claims take their ids from its in-memory index
of queued jobs, so a claim with nothing due costs no query at all.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import msgspec

from adapters.sqlite.errors import one_line
from adapters.sqlite.maintenance import PURGE_JOBS_SQL, PURGE_TICKS_SQL, PURGE_WORKFLOWS_SQL
from adapters.sqlite.rows import job_from_row, to_json, workflow_from_row
from adapters.sqlite.schema import IDEMPOTENCY_COLUMNS, JOB_SELECT, WORKFLOW_SELECT, placeholders
from adapters.sqlite.writer import Kind, SqliteWriter
from application.ports import Commit, IdempotencyKey, JobFilter, JobPage, JobRepository
from domain.errors import NotStorable
from domain.job import Job, Progress
from domain.queues import DEFAULT_QUEUE
from domain.workflow import Workflow

__all__ = ["SqliteJobRepository"]

READ_CHUNK: Final[int] = 512
# Job.queue in SQL (domain.queues.effective_queue): its queue, else its routing key, else the default queue.
EFFECTIVE_QUEUE: Final = (
    "COALESCE(NULLIF(json_extract(options, '$.queue'), ''), NULLIF(json_extract(options, '$.routing_key'), ''),"
    f" '{DEFAULT_QUEUE}')"
)
"""Ids per ``IN (...)`` read in :meth:`SqliteJobRepository.peek_many` (``ResultSet`` asks for up to 512)."""


class SqliteJobRepository(JobRepository):
    """Jobs and workflows in one SQLite file (WAL), written by one writer task with group commit."""

    exclusive = True
    """Only this engine uses the file while it is open (``<path>.lock``): every lease found is stale."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        synchronous: str = "NORMAL",
        busy_timeout_ms: int = 5000,
        max_size_mb: int | None = None,
    ) -> None:
        self._writer = SqliteWriter(
            path, synchronous=synchronous, busy_timeout_ms=busy_timeout_ms, max_size_mb=max_size_mb
        )

    def __repr__(self) -> str:
        return f"SqliteJobRepository({str(self.path)!r})"

    @property
    def writer(self) -> SqliteWriter:
        """The database's writer, shared by the repositories of the other tables in the same file."""
        return self._writer

    @property
    def path(self) -> Path:
        """The path as given (named in messages)."""
        return self._writer.path

    @property
    def real_path(self) -> Path:
        """The file the path names, symlinks and ``..`` resolved: what SQLite opens."""
        return self._writer.real_path

    @property
    def lock_path(self) -> Path:
        return self._writer.lock_path

    @property
    def synchronous(self) -> str:
        return self._writer.synchronous

    @property
    def busy_timeout_ms(self) -> int:
        return self._writer.busy_timeout_ms

    @property
    def max_size_mb(self) -> int | None:
        return self._writer.max_size_mb

    @property
    def inline(self) -> bool:
        """Commits run on the event loop itself (``synchronous=NORMAL``); see :class:`SqliteWriter`."""
        return self._writer.inline

    @property
    def transactions(self) -> int:
        """Transactions the writer committed (a batch is one; a batch retried op by op is several)."""
        return self._writer.transactions

    async def open(self) -> None:
        await self._writer.open()

    async def close(self) -> None:
        """Finish the writes already queued, then close both connections and release the lock."""
        await self._writer.close()

    # --- writes -----------------------------------------------------------------------------------------

    async def commit(self, commit: Commit) -> None:
        await self._writer.commit(commit)

    def commit_from_thread(self, commit: Commit) -> bool:
        """Commit on the calling thread, not the event loop's; False (nothing written) when not possible:
        see :meth:`SqliteWriter.commit_from_thread`."""
        return self._writer.commit_from_thread(commit)

    async def claim(
        self, *, owner: str, now: float, limit: int, lease_until: float, queues: Mapping[str, int] | None = None
    ) -> list[Job]:
        self._writer.check_open()
        if limit <= 0:
            return []
        with self._writer.due_lock:
            taken = self._writer.due.take_due(now, limit, queues)
        if not taken:
            return []
        ids = [job_id for job_id, _, _ in taken]
        params = (now, owner, lease_until, *ids)
        try:
            claimed: list[Job] = await self._writer.submit(Kind.CLAIM, (params, ids))
        except BaseException:
            with self._writer.due_lock:
                self._writer.due.restore(taken)
            raise
        if len(claimed) < len(ids):  # some changed meanwhile: those hold no key
            stored = {job.id for job in claimed}
            with self._writer.due_lock:
                self._writer.due.not_claimed([job_id for job_id in ids if job_id not in stored])
        return claimed

    async def save_progress(self, job_id: str, owner: str, progress: Progress) -> bool:
        self._writer.check_open()
        try:
            encoded = to_json(progress)
        except (TypeError, ValueError, OverflowError, msgspec.EncodeError) as exc:
            raise NotStorable(f"cannot be encoded as JSON: {one_line(exc)}") from None
        saved: bool = await self._writer.submit(Kind.PROGRESS, (encoded, job_id, owner))
        return saved

    async def renew_leases(self, owner: str, job_ids: list[str], lease_until: float) -> None:
        self._writer.check_open()
        if not job_ids:
            return
        await self._writer.submit(Kind.RENEW, [(lease_until, job_id, owner) for job_id in job_ids])

    # --- reads --------------------------------------------------------------------------------------------

    async def get(self, job_id: str) -> Job | None:
        return self.peek(job_id)

    def peek(self, job_id: str) -> Job | None:
        rows = self._writer.read(f"SELECT {JOB_SELECT} FROM jobs WHERE id = ?", (job_id,))
        return job_from_row(rows[0]) if rows else None

    async def get_many(self, job_ids: Sequence[str]) -> dict[str, Job]:
        return self.peek_many(job_ids)

    def peek_many(self, job_ids: Sequence[str]) -> dict[str, Job]:
        found: dict[str, Job] = {}
        for start in range(0, len(job_ids), READ_CHUNK):
            chunk = list(job_ids[start : start + READ_CHUNK])
            sql = f"SELECT {JOB_SELECT} FROM jobs WHERE id IN ({placeholders(len(chunk))})"
            for row in self._writer.read(sql, chunk):
                found[row[0]] = job_from_row(row)
        return found

    async def children(self, job_id: str) -> list[Job]:
        return self.peek_children(job_id)

    def peek_children(self, job_id: str) -> list[Job]:
        sql = (
            f"SELECT {JOB_SELECT} FROM jobs WHERE options IS NOT NULL"
            " AND json_extract(options, '$.parent_id') = ? ORDER BY seq"
        )
        return [job_from_row(row) for row in self._writer.read(sql, (job_id,))]

    async def get_workflow(self, workflow_id: str) -> Workflow | None:
        return self.peek_workflow(workflow_id)

    def peek_workflow(self, workflow_id: str) -> Workflow | None:
        rows = self._writer.read(f"SELECT {WORKFLOW_SELECT} FROM workflows WHERE id = ?", (workflow_id,))
        return workflow_from_row(rows[0]) if rows else None

    async def idempotency_key(self, key: str) -> IdempotencyKey | None:
        rows = self._writer.read(f"SELECT {IDEMPOTENCY_COLUMNS} FROM idempotency_keys WHERE key = ?", (key,))
        if not rows:
            return None
        key, fingerprint, kind, target, created_at = rows[0]
        return IdempotencyKey(key=key, fingerprint=fingerprint, kind=kind, target=target, created_at=created_at)

    async def workflow_jobs(self, workflow_id: str) -> list[Job]:
        rows = self._writer.read(f"SELECT {JOB_SELECT} FROM jobs WHERE workflow_id = ? ORDER BY seq", (workflow_id,))
        return [job_from_row(row) for row in rows]

    async def list_jobs(self, filter: JobFilter, *, limit: int, cursor: str | None = None) -> JobPage:
        limit = max(limit, 0)
        clauses: list[str] = []
        params: list[Any] = []
        if cursor:
            clauses.append("seq < ?")
            params.append(int(cursor))
        if filter.state is not None:
            clauses.append("state = ?")
            params.append(str(filter.state))
        if filter.task is not None:
            clauses.append("task = ?")
            params.append(filter.task)
        if filter.workflow_id is not None:
            clauses.append("(workflow_id = ? OR root_id = ?)")
            params += [filter.workflow_id, filter.workflow_id]
        if filter.schedule is not None:
            clauses.append("id IN (SELECT job_id FROM schedule_ticks WHERE schedule = ?)")
            params.append(filter.schedule)
        if filter.queue is not None:  # the queue lives in the options JSON (Job.queue)
            clauses.append(f"{EFFECTIVE_QUEUE} = ?")
            params.append(filter.queue)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        params.append(limit + 1)
        rows = self._writer.read(f"SELECT {JOB_SELECT}, seq FROM jobs {where} ORDER BY seq DESC LIMIT ?", params)
        more = len(rows) > limit
        rows = rows[:limit]
        next_cursor = str(rows[-1][-1]) if more and rows else None
        return JobPage(items=[job_from_row(row) for row in rows], next_cursor=next_cursor)

    async def next_due_at(self, queues: Collection[str] | None = None) -> float | None:
        with self._writer.due_lock:
            return self._writer.due.next_due(queues)

    async def queue_depths(self) -> dict[str, int]:
        with self._writer.due_lock:  # the index holds exactly the queued jobs (one engine owns the file)
            return self._writer.due.depths()

    async def leased_jobs(self, *, expired_before: float) -> list[Job]:
        rows = self._writer.read(
            f"SELECT {JOB_SELECT} FROM jobs INDEXED BY jobs_leased "
            "WHERE state = 'STARTED' AND lease_owner IS NOT NULL AND lease_expires_at < ? ORDER BY seq",
            (float(expired_before),),
        )
        return [job_from_row(row) for row in rows]

    async def forget(self, job_id: str) -> bool:
        deleted = await self._writer.execute(
            [("DELETE FROM jobs WHERE id = ? AND state IN ('SUCCESS', 'FAILURE', 'REVOKED')", (job_id,))]
        )
        return deleted > 0

    async def purge(self, finished_before: float) -> int:
        cutoff = {"cutoff": float(finished_before)}
        workflows = await self._writer.execute([(PURGE_WORKFLOWS_SQL, cutoff)])
        jobs = await self._writer.execute([(PURGE_JOBS_SQL, cutoff)])
        await self._writer.execute([(PURGE_TICKS_SQL, cutoff)])
        return workflows + jobs

    async def count_by_state(self, states: Collection[str] | None = None) -> dict[str, int]:
        if states is None:
            rows = self._writer.read("SELECT state, count(*) FROM jobs GROUP BY state")
        else:
            wanted = list(states)
            if not wanted:
                return {}
            marks = ", ".join("?" * len(wanted))
            rows = self._writer.read(
                f"SELECT state, count(*) FROM jobs WHERE state IN ({marks}) GROUP BY state", wanted
            )
        return {state: count for state, count in rows}
