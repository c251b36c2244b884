"""One transaction of the writer's batch, on the writing connection: the operations a batch holds, how a
run of commits is applied (guards checked in one SELECT, one upsert per table), and checkpoints."""

from __future__ import annotations

import enum
import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any

from adapters.sqlite.rows import CommitRows, claimed_jobs
from adapters.sqlite.schema import (
    ADVANCE_SCHEDULE_SQL,
    CLAIM_SQL,
    GUARD_SQL,
    INSERT_KEY_SQL,
    INSERT_TICK_SQL,
    KEYS_SQL,
    PROGRESS_SQL,
    RENEW_SQL,
    TICK_FIRED_SQL,
    UPSERT_JOB,
    UPSERT_WORKFLOW,
    VERSION_SQL,
    VERSIONS_SQL,
    placeholders,
)
from application.ports.schedule_store import ScheduleTick
from domain.errors import Conflict, IdempotencyKeyTaken, WorkflowChanged

__all__ = ["Kind", "Params", "checkpoint", "is_busy", "run_transaction"]

Params = Sequence[Any] | Mapping[str, Any]


class Kind(enum.Enum):
    COMMIT = enum.auto()
    CLAIM = enum.auto()
    PROGRESS = enum.auto()
    RENEW = enum.auto()
    EXECUTE = enum.auto()


def run_transaction(db: sqlite3.Connection, items: list[tuple[Kind, Any]]) -> list[Any]:
    """Run ``items`` in one transaction; an outcome per item (a ``Conflict`` for a failed guard)."""
    db.execute("BEGIN IMMEDIATE")
    outcomes: list[Any] = []
    index = 0
    while index < len(items):
        kind, payload = items[index]
        if kind is Kind.COMMIT:
            end = index + 1
            while end < len(items) and items[end][0] is Kind.COMMIT:
                end += 1
            outcomes.extend(_apply_commits(db, [queued for _, queued in items[index:end]]))
            index = end
            continue
        if kind is Kind.CLAIM:
            params, ids = payload
            sql = CLAIM_SQL.replace("{ids}", placeholders(len(ids)))
            outcomes.append(claimed_jobs(db.execute(sql, params).fetchall(), ids))
        elif kind is Kind.PROGRESS:
            outcomes.append(bool(db.execute(PROGRESS_SQL, payload).fetchall()))
        elif kind is Kind.EXECUTE:
            outcomes.append(_execute_statements(db, payload))
        else:
            db.executemany(RENEW_SQL, payload)
            outcomes.append(None)
        index += 1
    db.execute("COMMIT")
    return outcomes


def _apply_commits(db: sqlite3.Connection, commits: list[CommitRows]) -> list[Exception | None]:
    """Apply a run of consecutive commits: one SELECT for all their guards, one upsert per table.

    The guards are checked in order against the stored rows as updated by the earlier commits of
    the run (their rows carry each job's state and lease owner), exactly as if run one by one; so are
    idempotency keys (one taken by an earlier commit of the run is taken).
    """
    guarded = {commit.guard.job_id for commit in commits if commit.guard is not None}
    current: dict[str, tuple[str, str | None]] = {}
    if guarded:
        ids = sorted(guarded)
        rows = db.execute(GUARD_SQL.replace("{ids}", placeholders(len(ids))), ids).fetchall()
        current = {row[0]: (row[1], row[2]) for row in rows}
    versions = _stored_versions(db, commits)
    taken = _stored_keys(db, commits)
    key_rows: list[tuple[Any, ...]] = []
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
            refused = fire_tick(db, commit.tick)
            if refused is not None:
                outcomes.append(refused)
                continue
        if commit.idempotency is not None:
            if commit.idempotency[0] in taken:
                outcomes.append(IdempotencyKeyTaken(commit.idempotency[0]))
                continue
            taken.add(commit.idempotency[0])
            key_rows.append(commit.idempotency)
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
        db.executemany(UPSERT_WORKFLOW, workflow_rows)
    if job_rows:
        db.executemany(UPSERT_JOB, job_rows)
    if bumped:
        db.executemany(VERSION_SQL, [(version, workflow_id) for workflow_id, version in bumped.items()])
    if key_rows:
        db.executemany(INSERT_KEY_SQL, key_rows)
    return outcomes


def _stored_keys(db: sqlite3.Connection, commits: list[CommitRows]) -> set[str]:
    """Which of the idempotency keys the commits of a run carry are stored already (one SELECT)."""
    keys = sorted({commit.idempotency[0] for commit in commits if commit.idempotency is not None})
    if not keys:
        return set()
    return {row[0] for row in db.execute(KEYS_SQL.replace("{ids}", placeholders(len(keys))), keys)}


def _stored_versions(db: sqlite3.Connection, commits: list[CommitRows]) -> dict[str, int]:
    """The stored version of every workflow the commits of a run advance (one SELECT)."""
    ids = sorted({workflow_id for commit in commits for workflow_id in commit.workflow_versions})
    if not ids:
        return {}
    return dict(db.execute(VERSIONS_SQL.replace("{ids}", placeholders(len(ids))), ids).fetchall())


def fire_tick(db: sqlite3.Connection, tick: ScheduleTick) -> Conflict | None:
    """Record ``tick`` fired and advance its schedule (compare-and-set on its revision), or say why not.
    Checked before anything is written: the transaction is this process's alone (``BEGIN IMMEDIATE``)."""
    if db.execute(TICK_FIRED_SQL, (tick.schedule, tick.tick)).fetchone() is not None:
        return Conflict(f"schedule {tick.schedule!r} fired its tick {tick.tick} already")
    if tick.revision is not None:
        params = (tick.next_due_at, tick.new_revision, tick.tick, tick.schedule, tick.revision)
        if db.execute(ADVANCE_SCHEDULE_SQL, params).rowcount != 1:
            return Conflict(f"schedule {tick.schedule!r} changed since its tick {tick.tick} was planned")
    db.execute(INSERT_TICK_SQL, (tick.schedule, tick.tick, tick.job_id))
    return None


# --- reads --------------------------------------------------------------------------------------------


def _execute_statements(db: sqlite3.Connection, statements: list[tuple[str, Params]]) -> int:
    first = -1
    for sql, params in statements:
        cursor = db.execute(sql, params)
        if first < 0:
            first = cursor.rowcount
            if first == 0:
                break
    return max(first, 0)


def checkpoint(connection: sqlite3.Connection) -> bool:
    """Whether the checkpoint finished (the WAL was reset).

    TRUNCATE, not PASSIVE: with commits arriving back to back a passive checkpoint never catches up,
    so the WAL is never reset and grows without end (450 MB for 20,000 jobs). TRUNCATE holds new
    writers for the few milliseconds it takes; inline commits then fall back to this same thread.
    """
    try:
        row = connection.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    except sqlite3.Error:
        return False
    return row is not None and row[0] == 0


def is_busy(exc: object) -> bool:
    return isinstance(exc, sqlite3.OperationalError) and ("locked" in str(exc) or "busy" in str(exc))
