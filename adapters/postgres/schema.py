"""The PostgreSQL schema: the numbered migrations, applied once under an advisory lock, the tables' columns
and the statements the writer and the readers run.

JSON values (arguments, results, errors, progress, canvases, options) are stored as ``TEXT`` holding
msgspec's JSON, not ``JSONB``: what comes back is byte for byte what was written (``JSONB`` reorders
object keys, drops duplicate keys and refuses ``\\u0000``), nothing is parsed on the server, and the one
value the engine looks up inside JSON, a job's Celery parent, has a column of its own (``parent_id``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    import asyncpg
    from asyncpg.pool import PoolConnectionProxy

from adapters.postgres.errors import SchemaTooNew
from domain.job import Job
from domain.workflow import Workflow

__all__ = ["MIGRATIONS", "MIGRATION_LOCK", "SCHEMA_VERSION", "TABLES", "migrate"]

_QUEUED: Final = "('PENDING', 'RETRY')"
_TERMINAL: Final = "('SUCCESS', 'FAILURE', 'REVOKED')"

MIGRATIONS: Final[tuple[str, ...]] = (
    # 1: jobs and workflows. ``seq`` is the order of first storage (listings, FIFO among equals).
    f"""
    CREATE TABLE jobs (
        id TEXT PRIMARY KEY,
        task TEXT NOT NULL,
        args TEXT NOT NULL,
        kwargs TEXT NOT NULL,
        state TEXT NOT NULL,
        priority BIGINT NOT NULL,
        due_at DOUBLE PRECISION NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        started_at DOUBLE PRECISION,
        finished_at DOUBLE PRECISION,
        attempts BIGINT NOT NULL,
        max_retries BIGINT,
        time_limit DOUBLE PRECISION,
        retry_on_worker_lost BOOLEAN NOT NULL,
        result TEXT,
        error TEXT,
        progress TEXT,
        workflow_id TEXT,
        node TEXT,
        lease_owner TEXT,
        lease_expires_at DOUBLE PRECISION,
        waiting_on TEXT,
        root_id TEXT,
        options TEXT,
        parent_id TEXT,
        seq BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE
    );
    CREATE INDEX jobs_claim ON jobs (priority DESC, due_at, seq) WHERE state IN {_QUEUED};
    CREATE INDEX jobs_due ON jobs (due_at) WHERE state IN {_QUEUED};
    CREATE INDEX jobs_leased ON jobs (lease_expires_at) WHERE state = 'STARTED' AND lease_owner IS NOT NULL;
    CREATE INDEX jobs_finished ON jobs (finished_at) WHERE state IN {_TERMINAL};
    CREATE INDEX jobs_state ON jobs (state, seq);
    CREATE INDEX jobs_task ON jobs (task, seq);
    CREATE INDEX jobs_workflow ON jobs (workflow_id, seq) WHERE workflow_id IS NOT NULL;
    CREATE INDEX jobs_root ON jobs (root_id, seq) WHERE root_id IS NOT NULL;
    CREATE INDEX jobs_parent ON jobs (parent_id, seq) WHERE parent_id IS NOT NULL;
    CREATE TABLE workflows (
        id TEXT PRIMARY KEY,
        canvas TEXT NOT NULL,
        state TEXT NOT NULL,
        result TEXT,
        error TEXT,
        created_at DOUBLE PRECISION NOT NULL,
        finished_at DOUBLE PRECISION,
        parent_job_id TEXT,
        root_id TEXT,
        lineage TEXT
    );
    CREATE INDEX workflows_finished ON workflows (finished_at) WHERE state IN {_TERMINAL};
    """,
    # 2: GeekBlog projects (adapters/postgres/project_repository.py), one row per section output.
    """
    CREATE TABLE projects (
        id TEXT PRIMARY KEY,
        topic TEXT NOT NULL,
        audience TEXT NOT NULL,
        tone TEXT NOT NULL,
        sections_wanted BIGINT NOT NULL,
        status TEXT NOT NULL,
        plan TEXT,
        article TEXT,
        finished TEXT,
        workflow_id TEXT,
        error TEXT,
        created_at DOUBLE PRECISION NOT NULL,
        updated_at DOUBLE PRECISION NOT NULL,
        seq BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE
    );
    CREATE TABLE project_sections (
        project_id TEXT NOT NULL,
        section_id TEXT NOT NULL,
        research TEXT,
        draft TEXT,
        PRIMARY KEY (project_id, section_id)
    );
    """,
    # 3: a workflow's version: how many guarded advances were stored (Commit.workflow_versions).
    """
    ALTER TABLE workflows ADD COLUMN version BIGINT NOT NULL DEFAULT 0;
    """,
    # 4: periodic schedules (the whole definition as JSON; its next due time and revision as columns) and
    # the ticks they fired, one row per (schedule, tick): a tick's job is stored once, whatever happens.
    """
    CREATE TABLE schedules (
        name TEXT PRIMARY KEY,
        spec TEXT NOT NULL,
        next_due_at DOUBLE PRECISION,
        revision TEXT NOT NULL,
        last_tick DOUBLE PRECISION
    );
    CREATE INDEX schedules_due ON schedules (next_due_at) WHERE next_due_at IS NOT NULL;
    CREATE TABLE schedule_ticks (
        schedule TEXT NOT NULL,
        tick DOUBLE PRECISION NOT NULL,
        job_id TEXT NOT NULL,
        PRIMARY KEY (schedule, tick)
    );
    """,
    # 5 (queue controls): a job's named queue (Job.queue), concurrency key and limit (Job.concurrency) and
    # seconds between starts of its task (Job.rate_interval), derived from its options, as columns: a claim
    # picks from the queues an engine serves by index and counts the STARTED jobs holding a key by index;
    # rate_limits holds when each rate-limited task may start a job next, for every engine.
    f"""
    ALTER TABLE jobs ADD COLUMN queue TEXT NOT NULL DEFAULT 'default';
    ALTER TABLE jobs ADD COLUMN concurrency_key TEXT;
    ALTER TABLE jobs ADD COLUMN concurrency_limit BIGINT;
    ALTER TABLE jobs ADD COLUMN rate_interval DOUBLE PRECISION;
    UPDATE jobs SET
        queue = coalesce(nullif(options::json ->> 'queue', ''), nullif(options::json ->> 'routing_key', ''), 'default'),
        concurrency_key = options::json ->> 'concurrency_key',
        concurrency_limit = CASE WHEN options::json ->> 'concurrency_key' IS NOT NULL
            THEN coalesce((options::json ->> 'concurrency_limit')::bigint, 1) END
    WHERE options IS NOT NULL;
    CREATE INDEX jobs_claim_queue ON jobs (queue, priority DESC, due_at, seq) WHERE state IN {_QUEUED};
    CREATE INDEX jobs_holding ON jobs (concurrency_key) WHERE state = 'STARTED' AND concurrency_key IS NOT NULL;
    CREATE INDEX jobs_rate_limited ON jobs (task, due_at) WHERE state IN {_QUEUED} AND rate_interval IS NOT NULL;
    CREATE TABLE rate_limits (task TEXT PRIMARY KEY, next_start DOUBLE PRECISION NOT NULL);
    """,
    # 6: idempotency keys (Commit.idempotency), each kept as long as the job or workflow it created: the
    # triggers free the keys of the rows a statement deletes (forget, purge).
    """
    CREATE TABLE idempotency_keys (
        key TEXT PRIMARY KEY,
        fingerprint TEXT NOT NULL,
        kind TEXT NOT NULL,
        target TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL
    );
    CREATE INDEX idempotency_keys_target ON idempotency_keys (target, kind);
    CREATE FUNCTION geekblog_free_idempotency_keys() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        DELETE FROM idempotency_keys USING deleted
        WHERE idempotency_keys.target = deleted.id AND idempotency_keys.kind = TG_ARGV[0];
        RETURN NULL;
    END
    $$;
    CREATE TRIGGER jobs_free_idempotency_keys AFTER DELETE ON jobs
        REFERENCING OLD TABLE AS deleted FOR EACH STATEMENT EXECUTE FUNCTION geekblog_free_idempotency_keys('job');
    CREATE TRIGGER workflows_free_idempotency_keys AFTER DELETE ON workflows
        REFERENCING OLD TABLE AS deleted FOR EACH STATEMENT
        EXECUTE FUNCTION geekblog_free_idempotency_keys('workflow');
    """,
    # 7: whether a STARTED job's concurrency key was granted to it (KEY_GRANT_SQL): a claim commits its jobs
    # STARTED first and checks their keys in a second transaction, so a job claimed but not yet checked is
    # told apart from one that holds its key (only those count against the limit).
    """
    ALTER TABLE jobs ADD COLUMN key_held BOOLEAN NOT NULL DEFAULT false;
    UPDATE jobs SET key_held = true WHERE state = 'STARTED' AND concurrency_key IS NOT NULL;
    """,
    # 8: a workflow's idempotency key (Workflow.idempotency_key), as a job keeps its own in its options;
    # the workflows stored under a key before it are given theirs.
    """
    ALTER TABLE workflows ADD COLUMN idempotency_key TEXT;
    UPDATE workflows SET idempotency_key = (
        SELECT key FROM idempotency_keys WHERE target = workflows.id AND kind = 'workflow'
    )
    WHERE id IN (SELECT target FROM idempotency_keys WHERE kind = 'workflow');
    """,
)
"""Schema migrations: ``MIGRATIONS[i]`` takes the database from version ``i`` to ``i + 1``."""

SCHEMA_VERSION: Final[int] = len(MIGRATIONS)

TABLES: Final[tuple[str, ...]] = (
    "jobs",
    "workflows",
    "projects",
    "project_sections",
    "schedules",
    "schedule_ticks",
    "rate_limits",
    "idempotency_keys",
)
"""Every table holding data (not the migrations' own)."""

MIGRATION_LOCK: Final[int] = int.from_bytes(b"geekblog", "big")
"""The advisory lock key (``pg_advisory_xact_lock``) held while migrating: replicas starting together
migrate once, the others wait and find the schema current."""

_VERSIONS_TABLE: Final = """
    CREATE TABLE IF NOT EXISTS geekblog_schema (
        version INTEGER PRIMARY KEY,
        applied_at TIMESTAMPTZ NOT NULL DEFAULT now(),
        applied_by INTEGER NOT NULL DEFAULT pg_backend_pid()
    )
"""

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
    raise RuntimeError("the PostgreSQL schema no longer matches Job/Workflow: add a migration and update the columns")

DERIVED_JOB_COLUMNS: Final[tuple[str, ...]] = (
    "parent_id",
    "queue",
    "concurrency_key",
    "concurrency_limit",
    "rate_interval",
)
"""Columns written from a job's other fields (``options.parent_id``, :attr:`Job.queue`, :attr:`Job.concurrency`,
:attr:`Job.rate_interval`), after its own."""
JOB_ROW_COLUMNS: Final[tuple[str, ...]] = (*JOB_COLUMNS, *DERIVED_JOB_COLUMNS)
"""What :func:`adapters.postgres.rows.job_row` gives, in order."""

JOB_SELECT: Final = ", ".join(JOB_COLUMNS)
WORKFLOW_SELECT: Final = ", ".join(WORKFLOW_COLUMNS)


def _upsert_sql(table: str, columns: tuple[str, ...]) -> str:
    # A workflow's version moves only by a guarded advance (VERSION_SQL), never by an upsert.
    updates = ", ".join(f"{column} = excluded.{column}" for column in columns if column not in ("id", "version"))
    values = ", ".join(f"${index}" for index in range(1, len(columns) + 1))
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({values}) ON CONFLICT (id) DO UPDATE SET {updates}"


UPSERT_JOB: Final = _upsert_sql("jobs", JOB_ROW_COLUMNS)
UPSERT_WORKFLOW: Final = _upsert_sql("workflows", WORKFLOW_COLUMNS)
GUARD_SQL: Final = "SELECT id, state, lease_owner FROM jobs WHERE id = ANY($1::text[]) ORDER BY id FOR UPDATE"
"""The guarded jobs, locked until the commit ends (in id order, so two writers never deadlock on them)."""
VERSIONS_SQL: Final = "SELECT id, version FROM workflows WHERE id = ANY($1::text[]) ORDER BY id FOR UPDATE"
"""The versions of the workflows a run of commits advances, locked until it ends: another engine's advance
of one of them waits, then reads the version this one stored (and is refused if it planned on the older)."""
VERSION_SQL: Final = "UPDATE workflows SET version = $1 WHERE id = $2"
IDEMPOTENCY_COLUMNS: Final = "key, fingerprint, kind, target, created_at"
INSERT_KEY_SQL: Final = (
    f"INSERT INTO idempotency_keys ({IDEMPOTENCY_COLUMNS}) VALUES ($1, $2, $3, $4, $5)"
    " ON CONFLICT (key) DO NOTHING RETURNING key"
)
"""Store a key unless it is stored: a concurrent transaction inserting the same key makes this one wait
for its outcome (then nothing is inserted if it committed), so one of two concurrent submissions wins."""
_KEY_HAS_ROOM: Final = """NOT (concurrency_key IS NOT NULL AND (concurrency_key, concurrency_limit) IN (
    SELECT held.concurrency_key, full_at FROM (
        SELECT concurrency_key, count(*) AS holders FROM jobs AS holder
        WHERE holder.state = 'STARTED' AND holder.concurrency_key IS NOT NULL GROUP BY concurrency_key
    ) AS held, generate_series(1, held.holders) AS full_at
))"""
"""A queued job's concurrency key has room, as this statement's snapshot sees it (a claim checks again
under the key's lock: see ``KEY_LOCK_SQL``): its (key, limit) is not among the full ones, (key, 1 ..
holders). An uncorrelated ``IN``: PostgreSQL reads the holders once per statement into a hash, where a
correlated count per queued row made the claim on 4,000 queued jobs 2.5 times as long."""
_RATE_ALLOWS: Final = """NOT (rate_interval IS NOT NULL AND task IN (
    SELECT rate_limits.task FROM rate_limits WHERE rate_limits.next_start > $1
))"""
"""A queued job's task may start a job at ``$1`` by its rate limit, as this statement's snapshot sees it (a
claim takes the start for real with ``RATE_TAKE_SQL``)."""
_CLAIMED: Final = f"""
    UPDATE jobs
    SET state = 'STARTED', started_at = $1, attempts = jobs.attempts + 1,
        lease_owner = $2, lease_expires_at = $3, progress = NULL, key_held = false
    FROM picked
    WHERE jobs.id = picked.id
    RETURNING {", ".join(f"jobs.{column}" for column in JOB_COLUMNS)}, jobs.seq,
        picked.was_state, picked.was_started_at, picked.was_progress
"""
CLAIM_SQL: Final = f"""
    WITH picked AS (
        SELECT id, state AS was_state, started_at AS was_started_at, progress AS was_progress FROM jobs
        WHERE state IN {_QUEUED} AND due_at <= $1 AND {_KEY_HAS_ROOM} AND {_RATE_ALLOWS}
        ORDER BY priority DESC, due_at, seq
        LIMIT $4
        FOR UPDATE SKIP LOCKED
    )
    {_CLAIMED}
"""
"""Take due queued jobs, skipping rows another transaction holds; RETURNING's order is unspecified (the
caller sorts by priority, due time, seq). Each row also says what the job was before (state, started_at,
progress), to put it back if its concurrency key turns out to be full."""
CLAIM_QUEUES_SQL: Final = f"""
    WITH picked AS (
        SELECT candidate.id, candidate.was_state, candidate.was_started_at, candidate.was_progress
        FROM unnest($5::text[], $6::bigint[]) AS served(queue, room)
        CROSS JOIN LATERAL (
            SELECT id, priority, due_at, seq, state AS was_state, started_at AS was_started_at,
                progress AS was_progress
            FROM jobs
            WHERE state IN {_QUEUED} AND due_at <= $1 AND queue = served.queue AND {_KEY_HAS_ROOM} AND {_RATE_ALLOWS}
            ORDER BY priority DESC, due_at, seq
            LIMIT least(served.room, $4)
            FOR UPDATE SKIP LOCKED
        ) AS candidate
        ORDER BY candidate.priority DESC, candidate.due_at, candidate.seq
        LIMIT $4
    )
    {_CLAIMED}
"""
""":data:`CLAIM_SQL` from the named queues ``$5`` only, at most ``$6[i]`` from the queue ``$5[i]`` (rows locked
for a queue past the overall limit stay queued, unlocked when the statement ends)."""
PROGRESS_SQL: Final = "UPDATE jobs SET progress = $1 WHERE id = $2 AND lease_owner = $3"
RENEW_SQL: Final = "UPDATE jobs SET lease_expires_at = $1 WHERE id = ANY($2::text[]) AND lease_owner = $3"


def _next_due(served: str) -> str:
    return f"""
    SELECT min(at) FROM (
        (SELECT due_at AS at FROM jobs
         WHERE state IN {_QUEUED} AND rate_interval IS NULL AND {_KEY_HAS_ROOM} {served}
         ORDER BY due_at LIMIT 1)
        UNION ALL
        (SELECT greatest(min(jobs.due_at), max(rate_limits.next_start)) FROM jobs
         LEFT JOIN rate_limits ON rate_limits.task = jobs.task
         WHERE state IN {_QUEUED} AND rate_interval IS NOT NULL AND {_KEY_HAS_ROOM} {served}
         GROUP BY jobs.task)
    ) AS candidates
"""


NEXT_DUE_SQL: Final = _next_due("")
"""When the next queued job may start: its due time, or later when its task's rate limit says so (jobs
waiting on a full concurrency key left out: a holder letting it go wakes the engines)."""
NEXT_DUE_IN_SQL: Final = _next_due("AND queue = ANY($1::text[])")
RATE_TAKE_SQL: Final = (
    "INSERT INTO rate_limits (task, next_start) VALUES ($1, $2) ON CONFLICT (task) DO UPDATE"
    " SET next_start = excluded.next_start WHERE rate_limits.next_start <= $3 RETURNING task"
)
"""Take the start of a job of task ``$1`` at ``$3``, the next one allowed at ``$2``; no row when a start was
taken since (the row lock orders claims of one task: each sees the next_start the one before stored)."""
KEY_LOCK_SQL: Final = (
    "SELECT pg_advisory_xact_lock(hashtextextended('geekblog concurrency key ' || key, 0))"
    " FROM unnest($1::text[]) AS key ORDER BY key"
)
"""Each of these concurrency keys locked until the transaction ends, in key order (no deadlock between two
claims): claims that took jobs of one key check it one after the other."""
KEY_HOLDERS_SQL: Final = (
    "SELECT concurrency_key, count(*) FILTER (WHERE key_held), array_agg(seq) FILTER (WHERE NOT key_held)"
    " FROM jobs WHERE state = 'STARTED' AND concurrency_key = ANY($1::text[])"
    " AND NOT (id = ANY($2::text[])) GROUP BY concurrency_key"
)
"""For each key, but for the jobs being checked: how many STARTED jobs hold it, and the ``seq`` of the STARTED
jobs claimed by another engine that has not checked them yet (an earlier one of those goes first)."""
KEY_GRANT_SQL: Final = "UPDATE jobs SET key_held = true WHERE id = ANY($1::text[])"
"""The jobs a check let keep their concurrency key: they count against its limit until they leave STARTED."""
UNCLAIM_SQL: Final = (
    "UPDATE jobs SET state = $2, started_at = $3, progress = $4, attempts = attempts - 1, lease_owner = NULL,"
    " lease_expires_at = NULL WHERE id = $1 AND lease_owner = $5"
)
"""A claimed job put back as it was: its concurrency key had no room for it after all."""
QUEUE_DEPTHS_SQL: Final = f"SELECT queue, count(*) FROM jobs WHERE state IN {_QUEUED} GROUP BY queue"
LEASED_SQL: Final = (
    f"SELECT {JOB_SELECT} FROM jobs WHERE state = 'STARTED' AND lease_owner IS NOT NULL AND lease_expires_at < $1"
    " ORDER BY seq"
)
FORGET_SQL: Final = f"DELETE FROM jobs WHERE id = $1 AND state IN {_TERMINAL}"
PURGE_WORKFLOWS_SQL: Final = f"""
    DELETE FROM workflows
    WHERE state IN {_TERMINAL} AND finished_at < $1
      AND NOT EXISTS (
        SELECT 1 FROM jobs
        WHERE jobs.workflow_id = workflows.id AND (jobs.state NOT IN {_TERMINAL} OR jobs.finished_at >= $1)
      )
"""
"""Finished workflows older than the cutoff, once every job of theirs is finished and older too."""
PURGE_JOBS_SQL: Final = f"""
    DELETE FROM jobs
    WHERE state IN {_TERMINAL} AND finished_at < $1
      AND (workflow_id IS NULL OR NOT EXISTS (SELECT 1 FROM workflows WHERE workflows.id = jobs.workflow_id))
"""
"""Finished jobs older than the cutoff that are not part of a workflow that is still kept."""
PURGE_TICKS_SQL: Final = """
    DELETE FROM schedule_ticks
    WHERE tick < $1 AND NOT EXISTS (SELECT 1 FROM jobs WHERE jobs.id = schedule_ticks.job_id)
"""
"""Records of schedule ticks older than the cutoff whose job is gone (a schedule's revision, not these rows,
keeps its past ticks from firing again)."""


async def migrate(connection: PoolConnectionProxy[asyncpg.Record], where: str) -> tuple[int, int]:
    """Take the database to :data:`SCHEMA_VERSION` in one transaction, under :data:`MIGRATION_LOCK`:
    ``(version found, migrations applied)``. ``where`` names the database in messages."""
    async with connection.transaction():
        await connection.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
        await connection.execute(_VERSIONS_TABLE)
        found = await connection.fetchval("SELECT coalesce(max(version), 0) FROM geekblog_schema")
        version = int(found)
        if version > SCHEMA_VERSION:
            raise SchemaTooNew(
                f"{where} has schema version {version}, newer than this engine's {SCHEMA_VERSION}: upgrade the engine"
            )
        for number in range(version, SCHEMA_VERSION):
            await connection.execute(MIGRATIONS[number])
            await connection.execute("INSERT INTO geekblog_schema (version) VALUES ($1)", number + 1)
    return version, SCHEMA_VERSION - version
