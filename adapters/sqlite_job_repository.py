"""The SQLite job repository: WAL, one writer task with group commit, inline reads on a second connection.

Writes (commits, claims, progress, lease renewals) go through an ``asyncio.Queue`` to a single writer
task. It takes everything already queued (up to ``MAX_BATCH`` operations) and runs it as ONE
``BEGIN IMMEDIATE`` … ``COMMIT`` in ONE hop to its own thread, which owns the writing connection;
every caller's future resolves only after that COMMIT returned. (One hop per batch, not one per
statement: aiosqlite's model cost ~16 thread hops per job, which bounded throughput.) A failed guard
rejects only its own commit; a transaction that raises is rolled back and its operations retried one
by one, so only the failing ones see the error.

Reads use a separate connection, called inline (no thread hop): in WAL mode a reader sees the last
committed state and never blocks the writer. Queued jobs are also indexed in memory
(:class:`~adapters.due_index.DueIndex`), so a claim with nothing due costs no query at all.

One engine per database file: ``open()`` holds an exclusive ``flock`` on ``<real path>.lock`` until
``close()``, where the real path is the given one with symlinks and ``..`` resolved, so every name of
the file (a symlink, a path through ``..``, a bind-mounted directory) meets the same lock. A file with
more than one hard link is refused: another link would be another name with its own lock (and its own
``-wal``, for SQLite).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import enum
import fcntl
import os
import sqlite3
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Final

import msgspec

from adapters.due_index import DueIndex
from adapters.sqlite_maintenance import (
    PRIVATE_FILE,
    PURGE_JOBS_SQL,
    PURGE_WORKFLOWS_SQL,
    create_private_file,
    make_private_directories,
    tighten,
)
from application.ports import Commit, Guard, JobFilter, JobPage, JobRepository
from domain.canvas import Canvas
from domain.errors import Conflict, NotStorable
from domain.job import NO_OPTIONS, CallOptions, ErrorInfo, Job, Progress
from domain.states import QUEUED_STATES, JobState
from domain.workflow import Lineage, Workflow

__all__ = [
    "MAX_BATCH",
    "MIGRATIONS",
    "NotADatabase",
    "SchemaTooNew",
    "SqliteJobRepository",
    "StorageClosed",
    "StorageError",
    "StorageLocked",
]


Params = Sequence[Any] | Mapping[str, Any]


class StorageError(Exception):
    """The database file cannot be used (see the subclasses); the message names the path."""


class StorageLocked(StorageError):
    """Another engine (process) has the database open."""


class SchemaTooNew(StorageError):
    """The database was written by a newer version of the engine."""


class NotADatabase(StorageError):
    """The file exists but is not a SQLite database (or is corrupt)."""


class StorageClosed(StorageError):
    """A write was attempted while the repository is not open."""


# --- schema -----------------------------------------------------------------------------------------

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
    # 3: GeekBlog projects (adapters/sqlite_project_repository.py), one row per section output.
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
)
"""Schema migrations: ``MIGRATIONS[i]`` takes the database to ``PRAGMA user_version = i + 1``."""

SCHEMA_VERSION: Final[int] = len(MIGRATIONS)

MAX_BATCH: Final[int] = 512
"""The most operations the writer puts in one transaction."""

_READ_CHUNK: Final[int] = 512
"""Ids per ``IN (...)`` read in :meth:`SqliteJobRepository.peek_many` (``ResultSet`` asks for up to 512)."""

_CHECKPOINT_EVERY: Final[int] = 1000
"""Inline commits between two WAL checkpoints (on the writer thread)."""

_IDLE_CHECKPOINT_SECONDS: Final[float] = 0.25
"""After a burst of commits, this long with none, a checkpoint resets the WAL (so it is small at rest)."""

_THREAD_COMMITS_PER_REPORT: Final[int] = 100
"""Commits from other threads are counted towards checkpoints on the loop in steps of this many."""

_SYNCHRONOUS_MODES: Final[frozenset[str]] = frozenset({"OFF", "NORMAL", "FULL", "EXTRA"})

_JOB_COLUMNS: Final[tuple[str, ...]] = (
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
_WORKFLOW_COLUMNS: Final[tuple[str, ...]] = (
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
)

if Job.__struct_fields__ != _JOB_COLUMNS or Workflow.__struct_fields__ != _WORKFLOW_COLUMNS:  # pragma: no cover
    raise RuntimeError("the SQLite schema no longer matches Job/Workflow: add a migration and update the columns")

_JOB_SELECT: Final = ", ".join(_JOB_COLUMNS)
_WORKFLOW_SELECT: Final = ", ".join(_WORKFLOW_COLUMNS)


def _upsert_sql(table: str, columns: Sequence[str]) -> str:
    updates = ", ".join(f"{column} = excluded.{column}" for column in columns if column != "id")
    return (
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))}) "
        f"ON CONFLICT(id) DO UPDATE SET {updates}"
    )


_UPSERT_JOB: Final = _upsert_sql("jobs", _JOB_COLUMNS)
_UPSERT_WORKFLOW: Final = _upsert_sql("workflows", _WORKFLOW_COLUMNS)
_GUARD_SQL: Final = "SELECT id, state, lease_owner FROM jobs WHERE id IN ({ids})"
# leased_jobs names its partial index: without ANALYZE statistics the planner prefers jobs_state.
_CLAIM_SQL: Final = f"""
    UPDATE jobs
    SET state = 'STARTED', started_at = ?, attempts = attempts + 1,
        lease_owner = ?, lease_expires_at = ?, progress = NULL
    WHERE id IN ({{ids}}) AND state IN ('PENDING', 'RETRY')
    RETURNING {_JOB_SELECT}
"""
"""Placeholders, not json_each: with ``IN (?, ...)`` SQLite looks each id up in its index."""
_QUEUED_SQL: Final = "SELECT id, priority, due_at, seq FROM jobs WHERE state IN ('PENDING', 'RETRY') ORDER BY seq"
_PROGRESS_SQL: Final = "UPDATE jobs SET progress = ? WHERE id = ? AND lease_owner = ? RETURNING seq"
_RENEW_SQL: Final = "UPDATE jobs SET lease_expires_at = ? WHERE id = ? AND lease_owner = ?"

# --- encoding ---------------------------------------------------------------------------------------

_encoder: Final = msgspec.json.Encoder()
_args_decoder: Final = msgspec.json.Decoder(list[Any])
_kwargs_decoder: Final = msgspec.json.Decoder(dict[str, Any])
_any_decoder: Final = msgspec.json.Decoder()
_error_decoder: Final = msgspec.json.Decoder(ErrorInfo)
_progress_decoder: Final = msgspec.json.Decoder(Progress)
_canvas_decoder: Final = msgspec.json.Decoder(Canvas)
_options_decoder: Final = msgspec.json.Decoder(CallOptions)
_lineage_decoder: Final = msgspec.json.Decoder(Lineage)


def _json(value: Any) -> str:
    return _encoder.encode(value).decode()


def _json_or_null(value: Any) -> str | None:
    return None if value is None else _encoder.encode(value).decode()


def _job_row(job: Job) -> tuple[Any, ...]:
    return (
        job.id,
        job.task,
        _json(job.args),
        _json(job.kwargs),
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
        None if job.options == NO_OPTIONS else _json(job.options),
    )


def _job_from_row(row: Sequence[Any]) -> Job:
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


def _workflow_row(workflow: Workflow) -> tuple[Any, ...]:
    return (
        workflow.id,
        _json(workflow.canvas),
        str(workflow.state),
        _json_or_null(workflow.result),
        _json_or_null(workflow.error),
        workflow.created_at,
        workflow.finished_at,
        workflow.parent_job_id,
        workflow.root_id,
        _json_or_null(workflow.lineage),
    )


def _workflow_from_row(row: Sequence[Any]) -> Workflow:
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
    )


def _claimed(rows: Sequence[Sequence[Any]], ids: list[str]) -> list[Job]:
    # RETURNING order is unspecified: put the jobs back in the order they were taken from the index.
    position = {job_id: index for index, job_id in enumerate(ids)}
    return [_job_from_row(row) for row in sorted(rows, key=lambda row: position[row[0]])]


def _guard_problem(guard: Guard, current: tuple[str, str | None] | None) -> str | None:
    """Why ``guard`` does not hold for a job whose (state, lease_owner) is ``current``; None if it holds."""
    if current is None:
        return f"job {guard.job_id} does not exist"
    state, lease_owner = current
    if guard.owner is not None and lease_owner != guard.owner:
        return f"job {guard.job_id} is no longer leased to {guard.owner}"
    if guard.states is not None and state not in guard.states:
        return f"job {guard.job_id} is {state}"
    return None


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


# --- the writer's operations --------------------------------------------------------------------------


class _Kind(enum.Enum):
    COMMIT = enum.auto()
    CLAIM = enum.auto()
    PROGRESS = enum.auto()
    RENEW = enum.auto()
    EXECUTE = enum.auto()


class _CommitRows:
    """A commit, encoded by the caller: rows to upsert, and each job's (id, state, lease_owner) for guards."""

    __slots__ = ("guard", "job_keys", "job_rows", "queue_changes", "workflow_rows")

    def __init__(self, commit: Commit) -> None:
        self.guard = commit.guard
        try:
            self.workflow_rows = [_workflow_row(workflow) for workflow in commit.workflows]
            self.job_rows = [_job_row(job) for job in commit.jobs]
        except (TypeError, ValueError, OverflowError, msgspec.EncodeError) as exc:
            raise NotStorable(f"cannot be encoded as JSON: {_one_line(exc)}") from None
        self.job_keys = [(job.id, str(job.state), job.lease_owner) for job in commit.jobs]
        self.queue_changes = [
            (job.id, job.priority, job.due_at) if job.state in QUEUED_STATES else (job.id, None, None)
            for job in commit.jobs
        ]


class _ThreadCommit:
    """A commit from another thread (:meth:`SqliteJobRepository.commit_from_thread`), waiting for the
    write lock; whoever holds the lock next commits it, in the same transaction as its own writes."""

    __slots__ = ("done", "outcome", "rows")

    def __init__(self, rows: _CommitRows) -> None:
        self.rows = rows
        self.done = False
        self.outcome: Any = None


class _Op:
    __slots__ = ("future", "kind", "payload")

    def __init__(self, kind: _Kind, payload: Any, future: asyncio.Future[Any]) -> None:
        self.kind = kind
        self.payload = payload
        self.future = future


_STOP: Final = None  # queued by close(): the writer finishes what is queued before it, then exits


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
        mode = synchronous.upper()
        if mode not in _SYNCHRONOUS_MODES:
            raise ValueError(f"synchronous must be one of {sorted(_SYNCHRONOUS_MODES)}, not {synchronous!r}")
        if busy_timeout_ms < 0:
            raise ValueError("busy_timeout_ms must be >= 0")
        self.path = Path(path)
        """The path as given (named in messages)."""
        self.real_path = Path(os.path.realpath(self.path))
        """The file the path names, symlinks and ``..`` resolved again by :meth:`open`: what SQLite opens."""
        self.lock_path = Path(f"{self.real_path}.lock")
        self.synchronous = mode
        self.busy_timeout_ms = int(busy_timeout_ms)
        self.max_size_mb = max_size_mb
        """A cap on the file's size (``PRAGMA max_page_count``): writes past it fail as a full disk would."""
        self.inline = mode == "NORMAL"
        """Commit on the event loop itself (~20 µs, no fsync with synchronous=NORMAL in WAL mode) rather
        than on the writer thread. A busy database is not waited for inline: that batch goes to the
        writer thread, which waits up to the busy timeout. WAL checkpoints run on the writer thread."""
        self._commits_since_checkpoint = 0
        self._checkpointer: sqlite3.Connection | None = None
        self._checkpoint: asyncio.Future[Any] | None = None
        self.transactions = 0
        """Transactions the writer committed (a batch is one; a batch retried op by op is several)."""
        self._lock_fd: int | None = None
        self._db: sqlite3.Connection | None = None
        self._write_lock = threading.Lock()
        """Held around every use of ``_db``: inline commits on the loop, the writer thread, and
        :meth:`commit_from_thread` on callers' threads."""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._from_threads: collections.deque[_ThreadCommit] = collections.deque()
        self._thread_commits = 0
        self._idle_timer: asyncio.TimerHandle | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._due = DueIndex()
        self._due_lock = threading.Lock()  # commits from other threads update the index too
        self._reader: sqlite3.Connection | None = None
        self._read_lock = threading.Lock()
        self._queue: asyncio.Queue[_Op | None] | None = None
        self._writer: asyncio.Task[None] | None = None
        self._accepting = False

    def __repr__(self) -> str:
        return f"SqliteJobRepository({str(self.path)!r})"

    # --- lifecycle ------------------------------------------------------------------------------------

    async def open(self) -> None:
        if self._writer is not None:
            return
        try:
            self._resolve_path()
            make_private_directories(self.real_path.parent)
            self._lock_fd = self._take_lock()
            self._refuse_other_links()
            self._make_files_private()
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="geekblog-sqlite-writer")
            await self._on_writer(self._open_writer)
            self._make_files_private()  # a -wal/-shm SQLite just created has the database's mode already
            self._reader = sqlite3.connect(self.real_path, check_same_thread=False, isolation_level=None)
            self._reader.execute(f"PRAGMA busy_timeout = {self.busy_timeout_ms}")
            self._reader.execute("PRAGMA query_only = ON")
            self._index_queued_jobs()
        except sqlite3.OperationalError as exc:
            await self._release()
            raise StorageError(f"cannot open {self.path}: {_one_line(exc)}") from exc
        except sqlite3.DatabaseError as exc:
            await self._release()
            raise NotADatabase(f"{self.path} is not a SQLite database ({_one_line(exc)})") from exc
        except BaseException:
            await self._release()
            raise
        self._queue = asyncio.Queue()
        self._loop = asyncio.get_running_loop()
        self._accepting = True
        self._writer = asyncio.create_task(self._write_loop(self._queue), name=f"sqlite writer {self.path}")

    async def _on_writer(self, fn: Any, *args: Any) -> Any:
        """Run ``fn(*args)`` on the writer thread (the only thread that touches the writing connection)."""
        assert self._executor is not None
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def _open_writer(self) -> None:
        db = sqlite3.connect(self.real_path, isolation_level=None, check_same_thread=False)
        self._db = db
        self._configure(db)
        self._migrate(db)
        if self.inline:
            db.execute("PRAGMA busy_timeout = 0")  # inline attempts never wait; see _run_batch
            db.execute("PRAGMA wal_autocheckpoint = 0")  # checkpoints are not run inside an inline commit
            self._checkpointer = sqlite3.connect(self.real_path, isolation_level=None, check_same_thread=False)
            self._checkpointer.execute(f"PRAGMA busy_timeout = {self.busy_timeout_ms}")

    def _index_queued_jobs(self) -> None:
        self._due = DueIndex()
        last = 0
        for job_id, priority, due_at, seq in self._read(_QUEUED_SQL):
            self._due.put(job_id, priority, due_at, order=seq)
            last = seq
        self._due.start_order_after(last)

    async def close(self) -> None:
        """Finish the writes already queued, then close both connections and release the lock."""
        self._accepting = False
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        try:
            if self._writer is not None:
                assert self._queue is not None
                self._queue.put_nowait(_STOP)
                await self._writer
        finally:
            self._writer = None
            self._queue = None
            await self._release()

    def _take_lock(self) -> int:
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, PRIVATE_FILE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if os.fstat(fd).st_mode & 0o777 != PRIVATE_FILE:
                with contextlib.suppress(PermissionError):  # another user's lock file keeps its mode
                    os.fchmod(fd, PRIVATE_FILE)
        except BlockingIOError:
            os.close(fd)
            raise StorageLocked(f"{self.path} is in use by another engine (lock file {self.lock_path})") from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        return fd

    def _resolve_path(self) -> None:
        """The real path (symlinks and ``..`` resolved, as far as the path exists) and its lock file."""
        self.real_path = Path(os.path.realpath(self.path))
        self.lock_path = Path(f"{self.real_path}.lock")

    def _make_files_private(self) -> None:
        """The database created 0600 (before SQLite creates it with the umask's mode); an existing one, and
        its ``-wal``, ``-shm`` and ``-journal``, lose any group or other permissions (SQLite creates those
        files with the database's mode, but leaves existing ones as they are)."""
        if not create_private_file(self.real_path):
            for suffix in ("", "-wal", "-shm", "-journal"):
                tighten(f"{self.real_path}{suffix}")

    def _refuse_other_links(self) -> None:
        """A database file with several hard links could be opened by another engine under another name
        (another lock file, another ``-wal``): refused, like a locked one."""
        try:
            links = os.stat(self.real_path).st_nlink
        except FileNotFoundError:
            return
        if links > 1:
            raise StorageLocked(
                f"{self.path} has {links} hard links: another engine could open it under another name;"
                " keep one link to the database file"
            )

    def _configure(self, db: sqlite3.Connection) -> None:
        rows = db.execute("PRAGMA journal_mode = WAL").fetchall()
        mode = str(rows[0][0]) if rows else "?"
        if mode.lower() != "wal":
            raise StorageError(f"{self.path} cannot use WAL journal mode (it is in {mode} mode)")
        db.execute(f"PRAGMA synchronous = {self.synchronous}")
        db.execute(f"PRAGMA busy_timeout = {self.busy_timeout_ms}")
        if self.max_size_mb:
            (page_size,) = db.execute("PRAGMA page_size").fetchone()
            db.execute(f"PRAGMA max_page_count = {max(self.max_size_mb * 1024 * 1024 // int(page_size), 1)}")

    def _migrate(self, db: sqlite3.Connection) -> None:
        version = int(db.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise SchemaTooNew(
                f"{self.path} has schema version {version}, newer than this engine's {SCHEMA_VERSION}: upgrade it"
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

    async def _release(self) -> None:
        """Close whatever is open (each step even if an earlier one failed)."""
        with self._write_lock:  # a commit from another thread finishes first; later ones see no connection
            db, self._db = self._db, None
        checkpointer, self._checkpointer = self._checkpointer, None
        executor, self._executor = self._executor, None
        reader, self._reader = self._reader, None
        fd, self._lock_fd = self._lock_fd, None
        try:
            if executor is not None:
                loop = asyncio.get_running_loop()
                if checkpointer is not None:
                    await loop.run_in_executor(executor, checkpointer.close)
                if db is not None:
                    await loop.run_in_executor(executor, db.close)
                executor.shutdown(wait=True)
        finally:
            try:
                if reader is not None:
                    with self._read_lock:
                        reader.close()
            finally:
                if fd is not None:
                    os.close(fd)  # closing the descriptor releases the flock

    # --- writes -----------------------------------------------------------------------------------------

    async def commit(self, commit: Commit) -> None:
        self._check_open()
        if commit.guard is None and not commit.jobs and not commit.workflows:
            return
        try:
            await self._submit(_Kind.COMMIT, _CommitRows(commit))
        except (OverflowError, sqlite3.InterfaceError) as exc:  # a value SQLite cannot bind (an int past 64 bits)
            raise NotStorable(f"SQLite cannot store it: {_one_line(exc)}") from None

    def commit_from_thread(self, commit: Commit) -> bool:
        """Commit on the calling thread, which is not the event loop's, and return once it is durable.

        A caller off the loop would otherwise wait for two thread switches (~100 µs) around a ~30 µs
        commit. Only in inline mode (``synchronous=NORMAL``), where commits are short: the loop's own
        inline commits wait for this one on :attr:`_write_lock`. Returns False, having written
        nothing, when this is not possible (another mode, not open, the database busy): the caller
        then goes through :meth:`commit` on the loop, which waits for a busy database patiently.
        """
        loop = self._loop
        if not self.inline or not self._accepting or loop is None:
            return False
        waiting = _ThreadCommit(_CommitRows(commit))
        self._from_threads.append(waiting)
        with self._write_lock:
            if not waiting.done:  # nobody took it into their transaction while this thread waited
                if self._db is None:
                    self._from_threads.remove(waiting)
                    return False
                self._write_batch_locked([])
        outcome = waiting.outcome
        if _is_busy(outcome):
            return False
        if isinstance(outcome, (OverflowError, sqlite3.InterfaceError)):
            raise NotStorable(f"SQLite cannot store it: {_one_line(outcome)}") from None
        if isinstance(outcome, BaseException):
            raise outcome
        # Waking the loop costs more than the commit (it then competes for the GIL): only when due.
        self._note_queue_changes(waiting.rows)
        self._thread_commits += 1
        if self._thread_commits >= _THREAD_COMMITS_PER_REPORT:
            self._thread_commits = 0
            with contextlib.suppress(RuntimeError):  # the loop closed
                loop.call_soon_threadsafe(self._maybe_checkpoint, _THREAD_COMMITS_PER_REPORT)
        return True

    async def claim(self, *, owner: str, now: float, limit: int, lease_until: float) -> list[Job]:
        self._check_open()
        if limit <= 0:
            return []
        with self._due_lock:
            taken = self._due.take_due(now, limit)
        if not taken:
            return []
        ids = [job_id for job_id, _ in taken]
        params = (now, owner, lease_until, *ids)
        try:
            claimed: list[Job] = await self._submit(_Kind.CLAIM, (params, ids))
        except BaseException:
            with self._due_lock:
                self._due.restore(taken)
            raise
        return claimed

    async def save_progress(self, job_id: str, owner: str, progress: Progress) -> bool:
        self._check_open()
        try:
            encoded = _json(progress)
        except (TypeError, ValueError, OverflowError, msgspec.EncodeError) as exc:
            raise NotStorable(f"cannot be encoded as JSON: {_one_line(exc)}") from None
        saved: bool = await self._submit(_Kind.PROGRESS, (encoded, job_id, owner))
        return saved

    async def renew_leases(self, owner: str, job_ids: list[str], lease_until: float) -> None:
        self._check_open()
        if not job_ids:
            return
        await self._submit(_Kind.RENEW, [(lease_until, job_id, owner) for job_id in job_ids])

    async def execute(self, statements: Sequence[tuple[str, Params]]) -> int:
        """Run ``statements`` in order inside the writer's next transaction (group commit), for other
        repositories that share this database file. If the first statement changes no row, the rest
        are skipped. Returns the number of rows the first statement changed."""
        self._check_open()
        changed: int = await self._submit(_Kind.EXECUTE, list(statements))
        return changed

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """Rows of a read on the reader connection (the last committed state), for repositories sharing the file."""
        return self._read(sql, params)

    def _check_open(self) -> None:
        if not self._accepting:
            raise StorageClosed(f"{self.path} is not open")

    async def _submit(self, kind: _Kind, payload: Any) -> Any:
        self._check_open()
        assert self._queue is not None
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Op(kind, payload, future))
        return await future

    async def _write_loop(self, queue: asyncio.Queue[_Op | None]) -> None:
        stopping = False
        try:
            while not stopping:
                item = await queue.get()
                batch: list[_Op] = []
                while True:
                    if item is None:  # _STOP
                        stopping = True
                        break
                    if not item.future.done():  # skip callers that were cancelled while queued
                        batch.append(item)
                    if len(batch) >= MAX_BATCH:
                        break
                    try:
                        item = queue.get_nowait()
                    except asyncio.QueueEmpty:
                        break
                if batch:
                    await self._run_batch(batch)
        finally:
            closed = StorageClosed(f"{self.path} was closed before this write ran")
            while not queue.empty():
                left = queue.get_nowait()
                if left is not None and not left.future.done():
                    left.future.set_exception(closed)

    async def _run_batch(self, batch: list[_Op]) -> None:
        items = [(op.kind, op.payload) for op in batch]
        try:
            outcomes = self._write_batch(items) if self.inline else None
            if outcomes is None or all(_is_busy(outcome) for outcome in outcomes):
                outcomes = await self._on_writer(self._write_batch_patiently, items)
            if self.inline:
                self._maybe_checkpoint(len(items))
        except BaseException as exc:
            for op in batch:
                _settle(op, StorageClosed(f"{self.path}: the writer stopped ({type(exc).__name__})"))
            raise
        for (kind, payload), outcome in zip(items, outcomes, strict=True):
            if kind is _Kind.COMMIT and not isinstance(outcome, BaseException):
                self._note_queue_changes(payload)
        for op, outcome in zip(batch, outcomes, strict=True):
            _settle(op, outcome)

    def _write_batch_patiently(self, items: list[tuple[_Kind, Any]]) -> list[Any]:
        """On the writer thread: the batch, waiting up to the busy timeout for another process's lock."""
        return self._write_batch(items, patient=self.inline)

    def _maybe_checkpoint(self, commits: int) -> None:
        """Every ~1,000 inline commits, a checkpoint on the writer thread, which resets the WAL; one
        that could not finish (the database busy) is tried again at the next commit."""
        self._commits_since_checkpoint += commits
        if self._idle_timer is None and self._accepting and self._uncheckpointed():
            self._idle_timer = asyncio.get_running_loop().call_later(
                _IDLE_CHECKPOINT_SECONDS, self._checkpoint_if_idle, self._uncheckpointed()
            )
        running = self._checkpoint
        if running is not None:
            if not running.done():
                return
            self._checkpoint = None
            if not running.result():
                self._commits_since_checkpoint = max(self._commits_since_checkpoint, _CHECKPOINT_EVERY)
        if self._commits_since_checkpoint < _CHECKPOINT_EVERY:
            return
        self._commits_since_checkpoint = 0
        checkpointer = self._checkpointer
        if checkpointer is not None and self._executor is not None:
            self._checkpoint = asyncio.get_running_loop().run_in_executor(self._executor, _checkpoint, checkpointer)

    def _uncheckpointed(self) -> int:
        """Commits since the last checkpoint (those of other threads not yet reported included)."""
        return self._commits_since_checkpoint + self._thread_commits

    def _checkpoint_if_idle(self, seen: int) -> None:
        """The idle timer: no commit since it was set (``seen`` unchanged) means the burst is over."""
        self._idle_timer = None
        if not self._accepting:
            return
        if self._uncheckpointed() == seen:
            self._thread_commits = 0
            self._maybe_checkpoint(_CHECKPOINT_EVERY)  # checkpoint now, whatever the count
        else:
            self._maybe_checkpoint(0)  # still busy: look again later

    def _note_queue_changes(self, rows: _CommitRows) -> None:
        with self._due_lock:
            for job_id, priority, due_at in rows.queue_changes:
                if priority is None or due_at is None:
                    self._due.discard(job_id)
                else:
                    self._due.put(job_id, priority, due_at)

    def _write_batch(self, items: list[tuple[_Kind, Any]], *, patient: bool = False) -> list[Any]:
        """The batch in one transaction; an outcome (or exception) per item. ``patient``: wait up to
        the busy timeout for another process's lock (inline attempts on the loop never wait)."""
        with self._write_lock:
            db = self._db
            if db is None:
                return [StorageClosed(f"{self.path} is not open")] * len(items)
            if not patient:
                return self._write_batch_locked(items)
            db.execute(f"PRAGMA busy_timeout = {self.busy_timeout_ms}")
            try:
                return self._write_batch_locked(items)
            finally:
                db.execute("PRAGMA busy_timeout = 0")

    def _write_batch_locked(self, items: list[tuple[_Kind, Any]]) -> list[Any]:
        """``items`` and every commit other threads are waiting to make, in one transaction."""
        if not self._from_threads:
            return self._run_items(items)
        waiting: list[_ThreadCommit] = []
        while self._from_threads:
            waiting.append(self._from_threads.popleft())
        outcomes = self._run_items([*items, *((_Kind.COMMIT, each.rows) for each in waiting)])
        for each, outcome in zip(waiting, outcomes[len(items) :], strict=True):
            each.outcome = outcome
            each.done = True
        return outcomes[: len(items)]

    def _run_items(self, items: list[tuple[_Kind, Any]]) -> list[Any]:
        try:
            return self._transaction(items)
        except Exception as exc:
            self._rollback()
            if len(items) == 1 or _is_busy(exc):
                # A locked database would fail each op again after another busy timeout: fail them now.
                return [exc] * len(items)
            # Something in the batch broke the transaction: run each op alone so only the culprit fails.
            outcomes: list[Any] = []
            for item in items:
                try:
                    outcomes.extend(self._transaction([item]))
                except Exception as alone:
                    self._rollback()
                    outcomes.append(alone)
            return outcomes

    def _rollback(self) -> None:
        assert self._db is not None
        with contextlib.suppress(sqlite3.Error):
            self._db.execute("ROLLBACK")

    def _transaction(self, items: list[tuple[_Kind, Any]]) -> list[Any]:
        """Run ``items`` in one transaction; an outcome per item (a ``Conflict`` for a failed guard)."""
        db = self._db
        assert db is not None
        db.execute("BEGIN IMMEDIATE")
        outcomes: list[Any] = []
        index = 0
        while index < len(items):
            kind, payload = items[index]
            if kind is _Kind.COMMIT:
                end = index + 1
                while end < len(items) and items[end][0] is _Kind.COMMIT:
                    end += 1
                outcomes.extend(self._apply_commits(db, [queued for _, queued in items[index:end]]))
                index = end
                continue
            if kind is _Kind.CLAIM:
                params, ids = payload
                sql = _CLAIM_SQL.replace("{ids}", _placeholders(len(ids)))
                outcomes.append(_claimed(db.execute(sql, params).fetchall(), ids))
            elif kind is _Kind.PROGRESS:
                outcomes.append(bool(db.execute(_PROGRESS_SQL, payload).fetchall()))
            elif kind is _Kind.EXECUTE:
                outcomes.append(_execute_statements(db, payload))
            else:
                db.executemany(_RENEW_SQL, payload)
                outcomes.append(None)
            index += 1
        db.execute("COMMIT")
        self.transactions += 1
        return outcomes

    def _apply_commits(self, db: sqlite3.Connection, commits: list[_CommitRows]) -> list[Conflict | None]:
        """Apply a run of consecutive commits: one SELECT for all their guards, one upsert per table.

        The guards are checked in order against the stored rows as updated by the earlier commits of
        the run (their rows carry each job's state and lease owner), exactly as if run one by one.
        """
        guarded = {commit.guard.job_id for commit in commits if commit.guard is not None}
        current: dict[str, tuple[str, str | None]] = {}
        if guarded:
            ids = sorted(guarded)
            rows = db.execute(_GUARD_SQL.replace("{ids}", _placeholders(len(ids))), ids).fetchall()
            current = {row[0]: (row[1], row[2]) for row in rows}
        outcomes: list[Conflict | None] = []
        workflow_rows: list[tuple[Any, ...]] = []
        job_rows: list[tuple[Any, ...]] = []
        for commit in commits:
            if commit.guard is not None:
                problem = _guard_problem(commit.guard, current.get(commit.guard.job_id))
                if problem is not None:
                    outcomes.append(Conflict(problem))
                    continue
            workflow_rows.extend(commit.workflow_rows)
            job_rows.extend(commit.job_rows)
            if guarded:
                for job_id, state, lease_owner in commit.job_keys:
                    if job_id in guarded:
                        current[job_id] = (state, lease_owner)
            outcomes.append(None)
        if workflow_rows:
            db.executemany(_UPSERT_WORKFLOW, workflow_rows)
        if job_rows:
            db.executemany(_UPSERT_JOB, job_rows)
        return outcomes

    # --- reads --------------------------------------------------------------------------------------------

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        with self._read_lock:
            reader = self._reader
            if reader is None:
                raise StorageClosed(f"{self.path} is not open")
            return reader.execute(sql, params).fetchall()

    async def get(self, job_id: str) -> Job | None:
        return self.peek(job_id)

    def peek(self, job_id: str) -> Job | None:
        rows = self._read(f"SELECT {_JOB_SELECT} FROM jobs WHERE id = ?", (job_id,))
        return _job_from_row(rows[0]) if rows else None

    def peek_many(self, job_ids: Sequence[str]) -> dict[str, Job]:
        found: dict[str, Job] = {}
        for start in range(0, len(job_ids), _READ_CHUNK):
            chunk = list(job_ids[start : start + _READ_CHUNK])
            sql = f"SELECT {_JOB_SELECT} FROM jobs WHERE id IN ({_placeholders(len(chunk))})"
            for row in self._read(sql, chunk):
                found[row[0]] = _job_from_row(row)
        return found

    def peek_children(self, job_id: str) -> list[Job]:
        sql = (
            f"SELECT {_JOB_SELECT} FROM jobs WHERE options IS NOT NULL"
            " AND json_extract(options, '$.parent_id') = ? ORDER BY seq"
        )
        return [_job_from_row(row) for row in self._read(sql, (job_id,))]

    async def get_workflow(self, workflow_id: str) -> Workflow | None:
        return self.peek_workflow(workflow_id)

    def peek_workflow(self, workflow_id: str) -> Workflow | None:
        rows = self._read(f"SELECT {_WORKFLOW_SELECT} FROM workflows WHERE id = ?", (workflow_id,))
        return _workflow_from_row(rows[0]) if rows else None

    async def workflow_jobs(self, workflow_id: str) -> list[Job]:
        rows = self._read(f"SELECT {_JOB_SELECT} FROM jobs WHERE workflow_id = ? ORDER BY seq", (workflow_id,))
        return [_job_from_row(row) for row in rows]

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
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        params.append(limit + 1)
        rows = self._read(f"SELECT {_JOB_SELECT}, seq FROM jobs {where} ORDER BY seq DESC LIMIT ?", params)
        more = len(rows) > limit
        rows = rows[:limit]
        next_cursor = str(rows[-1][-1]) if more and rows else None
        return JobPage(items=[_job_from_row(row) for row in rows], next_cursor=next_cursor)

    async def next_due_at(self) -> float | None:
        return self.peek_next_due()

    def peek_next_due(self) -> float | None:
        with self._due_lock:
            return self._due.next_due()

    async def leased_jobs(self, *, expired_before: float) -> list[Job]:
        rows = self._read(
            f"SELECT {_JOB_SELECT} FROM jobs INDEXED BY jobs_leased "
            "WHERE state = 'STARTED' AND lease_owner IS NOT NULL AND lease_expires_at < ? ORDER BY seq",
            (float(expired_before),),
        )
        return [_job_from_row(row) for row in rows]

    async def forget(self, job_id: str) -> bool:
        deleted = await self.execute(
            [("DELETE FROM jobs WHERE id = ? AND state IN ('SUCCESS', 'FAILURE', 'REVOKED')", (job_id,))]
        )
        return deleted > 0

    async def purge(self, finished_before: float) -> int:
        cutoff = {"cutoff": float(finished_before)}
        workflows = await self.execute([(PURGE_WORKFLOWS_SQL, cutoff)])
        jobs = await self.execute([(PURGE_JOBS_SQL, cutoff)])
        return workflows + jobs

    async def count_by_state(self) -> dict[str, int]:
        return {state: count for state, count in self._read("SELECT state, count(*) FROM jobs GROUP BY state")}


def _placeholders(count: int) -> str:
    """``?, ?, ...`` for an ``IN (...)`` of ``count`` values."""
    return ", ".join("?" * count)


def _execute_statements(db: sqlite3.Connection, statements: list[tuple[str, Params]]) -> int:
    first = -1
    for sql, params in statements:
        cursor = db.execute(sql, params)
        if first < 0:
            first = cursor.rowcount
            if first == 0:
                break
    return max(first, 0)


def _checkpoint(connection: sqlite3.Connection) -> bool:
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


def _is_busy(exc: object) -> bool:
    return isinstance(exc, sqlite3.OperationalError) and ("locked" in str(exc) or "busy" in str(exc))


def _settle(op: _Op, outcome: Any) -> None:
    if op.future.done():  # the caller was cancelled
        return
    if isinstance(outcome, BaseException):
        op.future.set_exception(outcome)
    else:
        op.future.set_result(outcome)
