"""What the PostgreSQL writer runs on its connection: an operation as one statement in its own implicit
transaction (a claim, progress, a lease renewal, an unguarded commit of one table, a guarded commit of the
guarded job's own row), and a run of commits inside the batch's transaction. Split from
:mod:`~adapters.postgres.writer`, which decides which way a batch goes and owns the connection."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final, TypeAlias

import asyncpg

from adapters.postgres.rows import Claimed, CommitRows, claimed_jobs
from adapters.postgres.schema import (
    CLAIM_QUEUES_SQL,
    CLAIM_SQL,
    GUARD_SQL,
    INSERT_KEY_SQL,
    JOB_ROW_COLUMNS,
    KEY_GRANT_SQL,
    KEY_HOLDERS_SQL,
    KEY_LOCK_SQL,
    PROGRESS_SQL,
    RATE_TAKE_SQL,
    RENEW_SQL,
    UNCLAIM_SQL,
    UPSERT_JOB,
    UPSERT_WORKFLOW,
    VERSION_SQL,
    VERSIONS_SQL,
)
from application.ports.schedule_store import ScheduleTick
from domain.errors import Conflict, IdempotencyKeyTaken, WorkflowChanged

if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

    Connection: TypeAlias = PoolConnectionProxy[asyncpg.Record]

Statements = list[tuple[str, Sequence[Any]]]

__all__ = [
    "Statements",
    "apply_commits",
    "changed",
    "check_controls",
    "claim_alone",
    "execute_statements",
    "guarded_alone",
    "not_stored",
    "progress_alone",
    "renew_alone",
    "upsert_alone",
]


_GUARDED_UPDATE: Final = (
    "UPDATE jobs SET "
    + ", ".join(f"{column} = ${index}" for index, column in enumerate(JOB_ROW_COLUMNS[1:], start=2))
    + f" WHERE id = $1 AND (${len(JOB_ROW_COLUMNS) + 1}::text IS NULL OR lease_owner = ${len(JOB_ROW_COLUMNS) + 1})"
    + f" AND (${len(JOB_ROW_COLUMNS) + 2}::text[] IS NULL OR state = ANY(${len(JOB_ROW_COLUMNS) + 2}::text[]))"
)
"""A guarded commit of the guarded job's own row, when it is all the commit writes: the row is written only
where the guard holds (its owner, its states), checked on the row as it is when the update locks it."""
_CURRENT_SQL: Final = "SELECT state, lease_owner FROM jobs WHERE id = $1"


async def claim_alone(connection: Connection, payload: Any) -> list[Any]:
    return claimed_jobs(await connection.fetch(CLAIM_SQL if len(payload) == 4 else CLAIM_QUEUES_SQL, *payload))


async def check_controls(connection: Connection, payload: Any) -> list[str]:
    """Inside a transaction: check the concurrency keys and rate limits of jobs just claimed (``payload``: the
    owner, the claim's ``now`` and the :class:`Claimed` jobs, in claim order), and put back the jobs they
    refuse, as they were; the ids put back.

    Keys first: each is locked (in key order), its holders counted, and the jobs past its limit refused;
    claims that took jobs of one key check it one after the other, each seeing what the ones before
    committed. A holder is a STARTED job a check granted the key (``key_held``); a job another engine
    claimed but has not checked yet does not hold it, but goes first when it was submitted first (so two
    engines claiming one key's jobs at once neither both back off nor start them out of order).

    Then rate limits: per task (in task order) one start is taken in ``rate_limits`` if its next start has
    come (the row's lock orders the claims of one task), and the task's other jobs are refused."""
    owner, now, claimed = payload
    refused: list[Claimed] = []
    keyed = [item for item in claimed if item.job.concurrency is not None]
    if keyed:
        keys = sorted({item.job.concurrency[0] for item in keyed})
        await connection.execute(KEY_LOCK_SQL, keys)
        ids = [item.job.id for item in keyed]
        counted = await connection.fetch(KEY_HOLDERS_SQL, keys, ids)
        holders: dict[str, int] = {row[0]: row[1] for row in counted}
        unchecked: dict[str, list[int]] = {row[0]: row[2] or [] for row in counted}
        granted: list[str] = []
        for item in keyed:
            key, limit = item.job.concurrency
            ahead = holders.get(key, 0) + sum(1 for seq in unchecked.get(key, ()) if seq < item.seq)
            if ahead < limit:
                holders[key] = holders.get(key, 0) + 1
                granted.append(item.job.id)
            else:
                refused.append(item)
        if granted:
            await connection.execute(KEY_GRANT_SQL, granted)
    by_task: dict[str, list[Claimed]] = {}
    refused_by_key = {item.job.id for item in refused}
    for item in claimed:
        if item.job.rate_interval is not None and item.job.id not in refused_by_key:
            by_task.setdefault(item.job.task, []).append(item)
    for task in sorted(by_task):
        first, *others = by_task[task]
        interval = first.job.rate_interval
        if await connection.fetchval(RATE_TAKE_SQL, task, now + interval, now) is None:
            others.insert(0, first)
        refused.extend(others)
    if refused:
        rows = [(item.job.id, item.was_state, item.was_started_at, item.was_progress, owner) for item in refused]
        await connection.executemany(UNCLAIM_SQL, rows)
    return [item.job.id for item in refused]


async def progress_alone(connection: Connection, payload: Any) -> bool:
    return changed(await connection.execute(PROGRESS_SQL, *payload)) > 0


async def renew_alone(connection: Connection, payload: Any) -> None:
    await connection.execute(RENEW_SQL, *payload)


async def upsert_alone(connection: Connection, commit: CommitRows) -> None:
    """New or unguarded rows of one table: one statement (``executemany`` for several rows), atomic on its
    own (one implicit transaction)."""
    sql, rows = (UPSERT_WORKFLOW, commit.workflow_rows) if commit.workflow_rows else (UPSERT_JOB, commit.job_rows)
    if len(rows) == 1:  # a lone row (a submission): execute costs less than a pipeline of one
        await connection.execute(sql, *rows[0])
    elif rows:
        await connection.executemany(sql, rows)


async def guarded_alone(connection: Connection, commit: CommitRows) -> Conflict | None:
    guard = commit.guard
    assert guard is not None
    states = None if guard.states is None else sorted(str(state) for state in guard.states)
    if changed(await connection.execute(_GUARDED_UPDATE, *commit.job_rows[0], guard.owner, states)) == 1:
        return None
    # Refused: the stored row says why (read after the refusal, so only the message can be newer than it).
    rows = await connection.fetch(_CURRENT_SQL, guard.job_id)
    current = (rows[0][0], rows[0][1]) if rows else None
    return Conflict(guard.problem(current) or f"job {guard.job_id} changed while its commit was checked")


async def apply_commits(connection: Connection, commits: list[CommitRows]) -> list[Exception | None]:
    """Apply a run of consecutive commits: one locking SELECT for all their guards, one upsert per table.

    The guards are checked in order against the stored rows as updated by the earlier commits of the run
    (their rows carry each job's state and lease owner), exactly as if run one by one. A commit's
    idempotency key is inserted as its checks pass (:data:`INSERT_KEY_SQL`): one stored already, by an
    earlier commit of the run or by another transaction, refuses that commit.
    """
    guarded = {commit.guard.job_id for commit in commits if commit.guard is not None}
    current: dict[str, tuple[str, str | None]] = {}
    if guarded:
        rows = await connection.fetch(GUARD_SQL, sorted(guarded))
        current = {row[0]: (row[1], row[2]) for row in rows}
    versions = await _stored_versions(connection, commits)
    bumped: dict[str, int] = {}
    outcomes: list[Exception | None] = []
    workflow_rows: list[tuple[Any, ...]] = []
    job_rows: list[tuple[Any, ...]] = []
    for commit in commits:
        if commit.guard is not None:
            problem = commit.guard.problem(current.get(commit.guard.job_id))
            if problem is not None:
                outcomes.append(Conflict(problem))
                continue
        stale = commit.stale_version(versions)
        if stale is not None:
            outcomes.append(WorkflowChanged(stale))
            continue
        if commit.tick is not None:
            refused = await fire_tick(connection, commit.tick)
            if refused is not None:
                outcomes.append(refused)
                continue
        if commit.idempotency is not None and await connection.fetchval(INSERT_KEY_SQL, *commit.idempotency) is None:
            outcomes.append(IdempotencyKeyTaken(commit.idempotency[0]))
            continue
        for row in commit.workflow_rows:
            versions.setdefault(row[0], 0)  # inserted now, or kept as stored
        for workflow_id, version in commit.workflow_versions.items():
            versions[workflow_id] = bumped[workflow_id] = version + 1
        workflow_rows.extend(commit.workflow_rows)
        job_rows.extend(commit.job_rows)
        if guarded:
            for job_id, state, lease_owner in commit.job_keys:
                if job_id in guarded:
                    current[job_id] = (state, lease_owner)
        outcomes.append(None)
    if workflow_rows:
        await connection.executemany(UPSERT_WORKFLOW, workflow_rows)
    if job_rows:
        await connection.executemany(UPSERT_JOB, job_rows)
    if bumped:
        await connection.executemany(VERSION_SQL, [(version, workflow_id) for workflow_id, version in bumped.items()])
    return outcomes


_ADVANCE_SCHEDULE: Final = (
    "UPDATE schedules SET next_due_at = $1, revision = $2, last_tick = $3 WHERE name = $4 AND revision = $5"
)
_INSERT_TICK: Final = (
    "INSERT INTO schedule_ticks (schedule, tick, job_id) VALUES ($1, $2, $3) ON CONFLICT (schedule, tick) DO NOTHING"
)


class _Refused(Exception):
    """A tick that may not fire (rolls its savepoint back)."""


async def fire_tick(connection: Connection, tick: ScheduleTick) -> Conflict | None:
    """Advance ``tick``'s schedule (compare-and-set on its revision: the row stays locked to the end of the
    transaction, so another engine's fire of the same tick waits, then finds the revision changed) and record
    the tick, unique per (schedule, tick); or say why not, having written nothing (a savepoint)."""
    try:
        async with connection.transaction():
            if tick.revision is not None:
                params = (tick.next_due_at, tick.new_revision, tick.tick, tick.schedule, tick.revision)
                if changed(await connection.execute(_ADVANCE_SCHEDULE, *params)) != 1:
                    raise _Refused(f"schedule {tick.schedule!r} changed since its tick {tick.tick} was planned")
            if changed(await connection.execute(_INSERT_TICK, tick.schedule, tick.tick, tick.job_id)) != 1:
                raise _Refused(f"schedule {tick.schedule!r} fired its tick {tick.tick} already")
    except _Refused as refused:
        return Conflict(str(refused))
    return None


async def _stored_versions(connection: Connection, commits: list[CommitRows]) -> dict[str, int]:
    """The stored version of every workflow the commits of a run advance, locked until the run's end."""
    ids = sorted({workflow_id for commit in commits for workflow_id in commit.workflow_versions})
    if not ids:
        return {}
    return {row[0]: row[1] for row in await connection.fetch(VERSIONS_SQL, ids)}


async def execute_statements(connection: Connection, statements: Statements) -> int:
    """Run ``statements`` in order; the rows the first one changed (the rest are skipped when it changed none)."""
    first = -1
    for sql, params in statements:
        count = changed(await connection.execute(sql, *params))
        if first < 0:
            first = count
            if first == 0:
                break
    return max(first, 0)


def changed(status: str) -> int:
    """Rows a statement changed, from its command tag (``UPDATE 3``, ``INSERT 0 1``, ``DELETE 0``)."""
    try:
        return int(status.rsplit(" ", 1)[-1])
    except ValueError:
        return 0


def not_stored(exc: BaseException) -> bool:
    """Whether a lone statement that failed this way certainly stored nothing, so it may run again.

    Yes when the driver refused to start it (its connection closed, or its protocol stuck after the server's
    farewell arrived unasked: both are checked before anything is sent), and when the server's answer was
    that it ended the session (``pg_terminate_backend``, a shutdown: SQLSTATE 57P01). A backend ended that
    way aborts the implicit transaction it was in; one that had committed has already sent its
    ReadyForQuery (a small write to a socket that is not full: the FATAL comes after it, and the statement
    succeeds). Any other loss leaves the outcome unknown."""
    if isinstance(exc, asyncpg.ConnectionDoesNotExistError):
        return isinstance(exc.__cause__, asyncpg.AdminShutdownError)
    if isinstance(exc, asyncpg.AdminShutdownError):
        return True
    if isinstance(exc, asyncpg.InternalClientError):
        return str(exc).startswith("cannot switch to state")
    return isinstance(exc, asyncpg.InterfaceError) and "connection is closed" in str(exc)
