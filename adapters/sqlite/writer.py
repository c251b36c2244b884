"""The one writer of a SQLite database file: the writing connection, group commit, locks and WAL checkpoints.

Writes (commits, claims, progress, lease renewals, other repositories' statements) go through an
``asyncio.Queue`` to a single writer task. It takes everything already queued (up to ``MAX_BATCH``
operations) and runs it as ONE ``BEGIN IMMEDIATE`` … ``COMMIT`` in ONE hop to its own thread, which owns
the writing connection; every caller's future resolves only after that COMMIT returned. (One hop per
batch, not one per statement: aiosqlite's model cost ~16 thread hops per job, which bounded throughput.)
A failed guard rejects only its own commit; a transaction that raises is rolled back and its operations
retried one by one, so only the failing ones see the error.

Three write paths share the writing connection under one lock: inline on the event loop (with
``synchronous=NORMAL``), on the writer thread (other modes, or a busy database), and
:meth:`SqliteWriter.commit_from_thread` on a caller's own thread.

Reads use a separate connection, called inline (no thread hop): in WAL mode a reader sees the last
committed state and never blocks the writer. Queued jobs are also indexed in memory
(:class:`~adapters.sqlite.queue_index.QueueIndexes`), kept in step with every commit, so a claim with
nothing due costs no query at all.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import sqlite3
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Final

from adapters.sqlite import files
from adapters.sqlite.errors import NotADatabase, StorageClosed, StorageError, one_line
from adapters.sqlite.queue_index import QueueIndexes
from adapters.sqlite.rows import CommitRows
from adapters.sqlite.schema import HOLDING_SQL, QUEUED_SQL, migrate
from adapters.sqlite.transaction import Kind, Params, checkpoint, is_busy, run_transaction
from application.ports import Commit
from domain.errors import NotStorable
from domain.queues import rate_interval

__all__ = ["MAX_BATCH", "Kind", "Params", "SqliteWriter"]


MAX_BATCH: Final[int] = 512
"""The most operations the writer puts in one transaction."""

_CHECKPOINT_EVERY: Final[int] = 1000
"""Inline commits between two WAL checkpoints (on the writer thread)."""

_IDLE_CHECKPOINT_SECONDS: Final[float] = 0.25
"""After a burst of commits, this long with none, a checkpoint resets the WAL (so it is small at rest)."""

_THREAD_COMMITS_PER_REPORT: Final[int] = 100
"""Commits from other threads are counted towards checkpoints on the loop in steps of this many."""


class _ThreadCommit:
    """A commit from another thread (:meth:`SqliteWriter.commit_from_thread`), waiting for the
    write lock; whoever holds the lock next commits it, in the same transaction as its own writes."""

    __slots__ = ("done", "outcome", "rows")

    def __init__(self, rows: CommitRows) -> None:
        self.rows = rows
        self.done = False
        self.outcome: Any = None


class _Op:
    __slots__ = ("future", "kind", "payload")

    def __init__(self, kind: Kind, payload: Any, future: asyncio.Future[Any]) -> None:
        self.kind = kind
        self.payload = payload
        self.future = future


_STOP: Final = None  # queued by close(): the writer finishes what is queued before it, then exits


class SqliteWriter:
    """Owns a database file while open: its lock, the writing connection and its thread, the reader, the
    index of queued jobs; every write to the file goes through it (one transaction per batch)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        synchronous: str = "NORMAL",
        busy_timeout_ms: int = 5000,
        max_size_mb: int | None = None,
    ) -> None:
        mode = synchronous.upper()
        if mode not in files.SYNCHRONOUS_MODES:
            raise ValueError(f"synchronous must be one of {sorted(files.SYNCHRONOUS_MODES)}, not {synchronous!r}")
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
        self.due = QueueIndexes()
        self.due_lock = threading.Lock()  # commits from other threads update the index too
        self._reader: sqlite3.Connection | None = None
        self._read_lock = threading.Lock()
        self._queue: asyncio.Queue[_Op | None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._accepting = False

    # --- lifecycle ------------------------------------------------------------------------------------

    async def open(self) -> None:
        if self._task is not None:
            return
        try:
            self._resolve_path()
            files.make_private_directories(self.real_path.parent)
            self._lock_fd = files.take_lock(self.path, self.lock_path)
            files.refuse_other_links(self.path, self.real_path)
            files.make_files_private(self.real_path)
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="geekblog-sqlite-writer")
            await self._on_writer(self._open_writer)
            files.make_files_private(self.real_path)  # a -wal/-shm SQLite just created has the database's mode already
            self._reader = files.open_reader(self.real_path, self.busy_timeout_ms)
            self._index_queued_jobs()
        except sqlite3.OperationalError as exc:
            await self._release()
            raise StorageError(f"cannot open {self.path}: {one_line(exc)}") from exc
        except sqlite3.DatabaseError as exc:
            await self._release()
            raise NotADatabase(f"{self.path} is not a SQLite database ({one_line(exc)})") from exc
        except BaseException:
            await self._release()
            raise
        self._queue = asyncio.Queue()
        self._loop = asyncio.get_running_loop()
        self._accepting = True
        self._task = asyncio.create_task(self._write_loop(self._queue), name=f"sqlite writer {self.path}")

    async def _on_writer(self, fn: Any, *args: Any) -> Any:
        """Run ``fn(*args)`` on the writer thread (the only thread that touches the writing connection)."""
        assert self._executor is not None
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def _open_writer(self) -> None:
        db = files.connect(self.real_path)
        self._db = db
        files.configure(db, self.path, self.synchronous, self.busy_timeout_ms, self.max_size_mb)
        migrate(db, self.path)
        if self.inline:
            db.execute("PRAGMA busy_timeout = 0")  # inline attempts never wait; see _run_batch
            db.execute("PRAGMA wal_autocheckpoint = 0")  # checkpoints are not run inside an inline commit
            self._checkpointer = files.connect(self.real_path)
            self._checkpointer.execute(f"PRAGMA busy_timeout = {self.busy_timeout_ms}")

    def _resolve_path(self) -> None:
        """The real path (symlinks and ``..`` resolved, as far as the path exists) and its lock file."""
        self.real_path = Path(os.path.realpath(self.path))
        self.lock_path = Path(f"{self.real_path}.lock")

    def _index_queued_jobs(self) -> None:
        self.due = QueueIndexes()
        last = 0
        for job_id, priority, due_at, seq, queue, key, limit, task, rate_limit in self.read(QUEUED_SQL):
            interval = rate_interval(rate_limit)
            self.due.put(
                job_id,
                priority,
                due_at,
                queue,
                order=seq,
                control=None if key is None else (key, limit or 1),
                rate=None if interval is None else (task, interval),
            )
            last = seq
        for job_id, key in self.read(HOLDING_SQL):
            self.due.hold(job_id, key)
        self.due.start_order_after(last)

    async def close(self) -> None:
        """Finish the writes already queued, then close both connections and release the lock."""
        self._accepting = False
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        try:
            if self._task is not None:
                assert self._queue is not None
                self._queue.put_nowait(_STOP)
                await self._task
        finally:
            self._task = None
            self._queue = None
            await self._release()

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
        self.check_open()
        if commit.guard is None and not commit.jobs and not commit.workflows:
            return
        try:
            await self.submit(Kind.COMMIT, CommitRows(commit))
        except (OverflowError, sqlite3.InterfaceError) as exc:  # a value SQLite cannot bind (an int past 64 bits)
            raise NotStorable(f"SQLite cannot store it: {one_line(exc)}") from None

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
        waiting = _ThreadCommit(CommitRows(commit))
        self._from_threads.append(waiting)
        with self._write_lock:
            if not waiting.done:  # nobody took it into their transaction while this thread waited
                if self._db is None:
                    self._from_threads.remove(waiting)
                    return False
                self._write_batch_locked([])
        outcome = waiting.outcome
        if is_busy(outcome):
            return False
        if isinstance(outcome, (OverflowError, sqlite3.InterfaceError)):
            raise NotStorable(f"SQLite cannot store it: {one_line(outcome)}") from None
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

    async def execute(self, statements: Sequence[tuple[str, Params]]) -> int:
        """Run ``statements`` in order inside the writer's next transaction (group commit), for the
        repositories that share this database file. If the first statement changes no row, the rest
        are skipped. Returns the number of rows the first statement changed."""
        self.check_open()
        changed: int = await self.submit(Kind.EXECUTE, list(statements))
        return changed

    def check_open(self) -> None:
        if not self._accepting:
            raise StorageClosed(f"{self.path} is not open")

    async def submit(self, kind: Kind, payload: Any) -> Any:
        """Queue one operation for the writer's next transaction; its outcome once that COMMIT returned."""
        self.check_open()
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
            if outcomes is None or all(is_busy(outcome) for outcome in outcomes):
                outcomes = await self._on_writer(self._write_batch_patiently, items)
            if self.inline:
                self._maybe_checkpoint(len(items))
        except BaseException as exc:
            for op in batch:
                _settle(op, StorageClosed(f"{self.path}: the writer stopped ({type(exc).__name__})"))
            raise
        for (kind, payload), outcome in zip(items, outcomes, strict=True):
            if kind is Kind.COMMIT and not isinstance(outcome, BaseException):
                self._note_queue_changes(payload)
        for op, outcome in zip(batch, outcomes, strict=True):
            _settle(op, outcome)

    def _write_batch_patiently(self, items: list[tuple[Kind, Any]]) -> list[Any]:
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
            self._checkpoint = asyncio.get_running_loop().run_in_executor(self._executor, checkpoint, checkpointer)

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

    def _note_queue_changes(self, rows: CommitRows) -> None:
        with self.due_lock:
            for job_id, priority, due_at, queue, control, started, rate in rows.queue_changes:
                if priority is not None:
                    self.due.put(job_id, priority, due_at, queue, control=control, rate=rate)
                elif started and control is not None:
                    self.due.started(job_id, control[0])
                else:
                    self.due.discard(job_id)

    def _write_batch(self, items: list[tuple[Kind, Any]], *, patient: bool = False) -> list[Any]:
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

    def _write_batch_locked(self, items: list[tuple[Kind, Any]]) -> list[Any]:
        """``items`` and every commit other threads are waiting to make, in one transaction."""
        if not self._from_threads:
            return self._run_items(items)
        waiting: list[_ThreadCommit] = []
        while self._from_threads:
            waiting.append(self._from_threads.popleft())
        outcomes = self._run_items([*items, *((Kind.COMMIT, each.rows) for each in waiting)])
        for each, outcome in zip(waiting, outcomes[len(items) :], strict=True):
            each.outcome = outcome
            each.done = True
        return outcomes[: len(items)]

    def _run_items(self, items: list[tuple[Kind, Any]]) -> list[Any]:
        try:
            return self._transaction(items)
        except Exception as exc:
            self._rollback()
            if len(items) == 1 or is_busy(exc):
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

    def _transaction(self, items: list[tuple[Kind, Any]]) -> list[Any]:
        """Run ``items`` in one transaction; an outcome per item (a ``Conflict`` for a failed guard)."""
        db = self._db
        assert db is not None
        outcomes = run_transaction(db, items)
        self.transactions += 1
        return outcomes

    def read(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """Rows of a read on the reader connection (the last committed state), inline."""
        with self._read_lock:
            reader = self._reader
            if reader is None:
                raise StorageClosed(f"{self.path} is not open")
            return reader.execute(sql, params).fetchall()


def _settle(op: _Op, outcome: Any) -> None:
    if op.future.done():  # the caller was cancelled
        return
    if isinstance(outcome, BaseException):
        op.future.set_exception(outcome)
    else:
        op.future.set_result(outcome)
