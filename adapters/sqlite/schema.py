"""The SQLite schema: the numbered migrations, the tables' columns and the statements the writer runs."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from adapters.sqlite.errors import SchemaTooNew
from domain.job import Job
from domain.workflow import Workflow

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "migrate"]

MIGRATIONS: Final[tuple[str, ...]] = (
    # 1: jobs and workflows.
    """
    CREATE TABLE jobs (
        seq INTEGER PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        task TEXT NOT NULL,
        args TEXT NOT NULL,
        kwargs TEXT NOT NULL,
        state TEXT NOT NULL,
        priority INTEGER NOT NULL,
        due_at REAL NOT NULL,
        created_at REAL NOT NULL,
        started_at REAL,
        finished_at REAL,
        attempts INTEGER NOT NULL,
        max_retries INTEGER NOT NULL,
        time_limit REAL,
        retry_on_worker_lost INTEGER NOT NULL,
        result TEXT,
        error TEXT,
        progress TEXT,
        workflow_id TEXT,
        node TEXT,
        lease_owner TEXT,
        lease_expires_at REAL,
        waiting_on TEXT
    );
    CREATE INDEX jobs_claim ON jobs (priority DESC, due_at, seq) WHERE state IN ('PENDING', 'RETRY');
    CREATE INDEX jobs_due ON jobs (due_at) WHERE state IN ('PENDING', 'RETRY');
    CREATE INDEX jobs_workflow ON jobs (workflow_id, seq);
    CREATE INDEX jobs_state ON jobs (state, seq);
    CREATE INDEX jobs_task ON jobs (task, seq);
    CREATE INDEX jobs_leased ON jobs (lease_expires_at) WHERE state = 'STARTED' AND lease_owner IS NOT NULL;
    CREATE TABLE workflows (
        id TEXT PRIMARY KEY,
        canvas TEXT NOT NULL,
        state TEXT NOT NULL,
        result TEXT,
        error TEXT,
        created_at REAL NOT NULL,
        finished_at REAL,
        parent_job_id TEXT
    );
    """,
    # 2: the outermost workflow of jobs and workflows created by self.replace.
    """
    ALTER TABLE jobs ADD COLUMN root_id TEXT;
    CREATE INDEX jobs_root ON jobs (root_id, seq) WHERE root_id IS NOT NULL;
    ALTER TABLE workflows ADD COLUMN root_id TEXT;
    """,
    # 3: GeekBlog projects (adapters/sqlite/project_repository.py), one row per section output.
    """
    CREATE TABLE projects (
        seq INTEGER PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        topic TEXT NOT NULL,
        audience TEXT NOT NULL,
        tone TEXT NOT NULL,
        sections_wanted INTEGER NOT NULL,
        status TEXT NOT NULL,
        plan TEXT,
        article TEXT,
        finished TEXT,
        workflow_id TEXT,
        error TEXT,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE TABLE project_sections (
        project_id TEXT NOT NULL,
        section_id TEXT NOT NULL,
        research TEXT,
        draft TEXT,
        PRIMARY KEY (project_id, section_id)
    ) WITHOUT ROWID;
    """,
    # 4: finding finished work to purge (GEEKBLOG_RESULT_TTL, geekblog purge).
    """
    CREATE INDEX jobs_finished ON jobs (finished_at) WHERE state IN ('SUCCESS', 'FAILURE', 'REVOKED');
    CREATE INDEX workflows_finished ON workflows (finished_at) WHERE state IN ('SUCCESS', 'FAILURE', 'REVOKED');
    """,
    # 5: claims come from the in-memory due index now: these indexes only cost writes.
    """
    DROP INDEX jobs_claim;
    DROP INDEX jobs_due;
    """,
    # 6: Celery's per-call options (queue, headers, expires, callbacks, parent/root ids) as JSON.
    """
    ALTER TABLE jobs ADD COLUMN options TEXT;
    ALTER TABLE workflows ADD COLUMN lineage TEXT;
    """,
    # 7: a job's children (AsyncResult.children): the jobs whose Celery parent it is.
    """
    CREATE INDEX jobs_parent ON jobs (json_extract(options, '$.parent_id'), seq) WHERE options IS NOT NULL;
    """,
    # 8: a workflow's version: how many guarded advances were stored (Commit.workflow_versions).
    """
    ALTER TABLE workflows ADD COLUMN version INTEGER NOT NULL DEFAULT 0;
    """,
    # 9: periodic schedules (the whole definition as JSON; its next due time and revision as columns) and
    # the ticks they fired, one row per (schedule, tick): a tick's job is stored once, whatever happens.
    """
    CREATE TABLE schedules (
        name TEXT PRIMARY KEY,
        spec TEXT NOT NULL,
        next_due_at REAL,
        revision TEXT NOT NULL,
        last_tick REAL
    ) WITHOUT ROWID;
    CREATE INDEX schedules_due ON schedules (next_due_at) WHERE next_due_at IS NOT NULL;
    CREATE TABLE schedule_ticks (
        schedule TEXT NOT NULL,
        tick REAL NOT NULL,
        job_id TEXT NOT NULL,
        PRIMARY KEY (schedule, tick)
    ) WITHOUT ROWID;
    """,
    # 10: idempotency keys (Commit.idempotency), each kept as long as the job or workflow it created: the
    # triggers free a key when its target is deleted (forget, purge, `geekblog purge` on the file).
    """
    CREATE TABLE idempotency_keys (
        key TEXT PRIMARY KEY,
        fingerprint TEXT NOT NULL,
        kind TEXT NOT NULL,
        target TEXT NOT NULL,
        created_at REAL NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX idempotency_keys_target ON idempotency_keys (target, kind);
    CREATE TRIGGER jobs_free_idempotency_keys AFTER DELETE ON jobs
    BEGIN
        DELETE FROM idempotency_keys WHERE target = old.id AND kind = 'job';
    END;
    CREATE TRIGGER workflows_free_idempotency_keys AFTER DELETE ON workflows
    BEGIN
        DELETE FROM idempotency_keys WHERE target = old.id AND kind = 'workflow';
    END;
    """,
    # 11: a workflow's idempotency key (Workflow.idempotency_key), as a job keeps its own in its options;
    # the workflows stored under a key before it are given theirs.
    """
    ALTER TABLE workflows ADD COLUMN idempotency_key TEXT;
    UPDATE workflows SET idempotency_key = (
        SELECT key FROM idempotency_keys WHERE target = workflows.id AND kind = 'workflow'
    )
    WHERE id IN (SELECT target FROM idempotency_keys WHERE kind = 'workflow');
    """,
)
"""Schema migrations: ``MIGRATIONS[i]`` takes the database to ``PRAGMA user_version = i + 1``."""

SCHEMA_VERSION: Final[int] = len(MIGRATIONS)

JOB_COLUMNS: Final[tuple[str, ...]] = (
    "id",
    "task",
    "args",
    "kwargs",
    "state",
    "priority",
    "due_at",
    "created_at",
    "started_at",
    "finished_at",
    "attempts",
    "max_retries",
    "time_limit",
    "retry_on_worker_lost",
    "result",
    "error",
    "progress",
    "workflow_id",
    "node",
    "lease_owner",
    "lease_expires_at",
    "waiting_on",
    "root_id",
    "options",
)
WORKFLOW_COLUMNS: Final[tuple[str, ...]] = (
    "id",
    "canvas",
    "state",
    "result",
    "error",
    "created_at",
    "finished_at",
    "parent_job_id",
    "root_id",
    "lineage",
    "version",
    "idempotency_key",
)

if Job.__struct_fields__ != JOB_COLUMNS or Workflow.__struct_fields__ != WORKFLOW_COLUMNS:  # pragma: no cover
    raise RuntimeError("the SQLite schema no longer matches Job/Workflow: add a migration and update the columns")

JOB_SELECT: Final = ", ".join(JOB_COLUMNS)
WORKFLOW_SELECT: Final = ", ".join(WORKFLOW_COLUMNS)


def _upsert_sql(table: str, columns: Sequence[str]) -> str:
    # A workflow's version moves only by a guarded advance (VERSION_SQL), never by an upsert.
    updates = ", ".join(f"{column} = excluded.{column}" for column in columns if column not in ("id", "version"))
    return (
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))}) "
        f"ON CONFLICT(id) DO UPDATE SET {updates}"
    )


UPSERT_JOB: Final = _upsert_sql("jobs", JOB_COLUMNS)
UPSERT_WORKFLOW: Final = _upsert_sql("workflows", WORKFLOW_COLUMNS)
GUARD_SQL: Final = "SELECT id, state, lease_owner FROM jobs WHERE id IN ({ids})"
VERSIONS_SQL: Final = "SELECT id, version FROM workflows WHERE id IN ({ids})"
VERSION_SQL: Final = "UPDATE workflows SET version = ? WHERE id = ?"
IDEMPOTENCY_COLUMNS: Final = "key, fingerprint, kind, target, created_at"
KEYS_SQL: Final = "SELECT key FROM idempotency_keys WHERE key IN ({ids})"
INSERT_KEY_SQL: Final = f"INSERT INTO idempotency_keys ({IDEMPOTENCY_COLUMNS}) VALUES (?, ?, ?, ?, ?)"
# leased_jobs names its partial index: without ANALYZE statistics the planner prefers jobs_state.
CLAIM_SQL: Final = f"""
    UPDATE jobs
    SET state = 'STARTED', started_at = ?, attempts = attempts + 1,
        lease_owner = ?, lease_expires_at = ?, progress = NULL
    WHERE id IN ({{ids}}) AND state IN ('PENDING', 'RETRY')
    RETURNING {JOB_SELECT}
"""
"""Placeholders, not json_each: with ``IN (?, ...)`` SQLite looks each id up in its index."""
QUEUED_SQL: Final = (
    "SELECT id, priority, due_at, seq, coalesce(nullif(json_extract(options, '$.queue'), ''),"
    " nullif(json_extract(options, '$.routing_key'), ''), 'default'),"
    " json_extract(options, '$.concurrency_key'), json_extract(options, '$.concurrency_limit'),"
    " task, json_extract(options, '$.rate_limit')"
    " FROM jobs WHERE state IN ('PENDING', 'RETRY') ORDER BY seq"
)
"""The queued jobs, each with its named queue (``domain.queues.effective_queue`` in SQL), concurrency key
and limit, task and rate limit."""
HOLDING_SQL: Final = (
    "SELECT id, json_extract(options, '$.concurrency_key') FROM jobs INDEXED BY jobs_state"
    " WHERE state = 'STARTED' AND json_extract(options, '$.concurrency_key') IS NOT NULL"
)
"""The STARTED jobs holding a concurrency key."""
PROGRESS_SQL: Final = "UPDATE jobs SET progress = ? WHERE id = ? AND lease_owner = ? RETURNING seq"
RENEW_SQL: Final = "UPDATE jobs SET lease_expires_at = ? WHERE id = ? AND lease_owner = ?"
TICK_FIRED_SQL: Final = "SELECT 1 FROM schedule_ticks WHERE schedule = ? AND tick = ?"
INSERT_TICK_SQL: Final = "INSERT INTO schedule_ticks (schedule, tick, job_id) VALUES (?, ?, ?)"
ADVANCE_SCHEDULE_SQL: Final = (
    "UPDATE schedules SET next_due_at = ?, revision = ?, last_tick = ? WHERE name = ? AND revision = ?"
)


def placeholders(count: int) -> str:
    """``?, ?, ...`` for an ``IN (...)`` of ``count`` values."""
    return ", ".join("?" * count)


def migrate(db: sqlite3.Connection, path: Path) -> None:
    """Take the database to :data:`SCHEMA_VERSION` in one transaction; ``path`` is named in messages."""
    version = int(db.execute("PRAGMA user_version").fetchone()[0])
    if version > SCHEMA_VERSION:
        raise SchemaTooNew(
            f"{path} has schema version {version}, newer than this engine's {SCHEMA_VERSION}: upgrade it"
        )
    if version == SCHEMA_VERSION:
        return
    script = "\n".join(
        ["BEGIN IMMEDIATE;", *MIGRATIONS[version:], f"PRAGMA user_version = {SCHEMA_VERSION};", "COMMIT;"]
    )
    try:
        db.executescript(script)
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            db.execute("ROLLBACK")
        raise
