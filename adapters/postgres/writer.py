"""The pool of one PostgreSQL database and this process's one writing connection, with group commit.

Every write (commits, claims, progress, lease renewals, other repositories' statements) goes through an
``asyncio.Queue`` to a single writer task, which takes everything already queued (up to ``MAX_BATCH``
operations) and runs it as ONE transaction on its own connection; every caller's future resolves only
after that COMMIT returned. So writes apply in the order they were called, as on SQLite (a claim
followed by a guarded commit sees the claim), and a busy engine pays one WAL flush per batch, not per
write. Across processes the database does the rest: guarded jobs are locked (``SELECT … FOR UPDATE``)
for the rest of the transaction, claims skip rows another transaction holds (``SKIP LOCKED``).

A batch of one operation that a single statement can do (a claim, a commit of new or unguarded rows of one
table, a guarded commit of the guarded job's own row, progress, a lease renewal) runs as that statement
alone, in the implicit transaction PostgreSQL gives it: one round trip instead of three or four (BEGIN,
the statements, COMMIT), and still committed before its caller hears of it. That is the common case of a
lightly loaded engine (each submission, claim and outcome alone in its batch), where round trips, not
the database's work, were the cost. A batch of two such operations runs them one after the other the same
way (see :data:`ALONE_PAIR`).

A failed guard rejects only its own commit; a transaction that raises is rolled back and its operations
retried one by one, so only the failing ones see the error. A lost connection fails the batch it was
running (whether its COMMIT landed is unknown: claims left behind keep their lease, which expires into a
recovery) and the next batch takes a fresh connection from the pool.

Reads take any connection of the pool: each sees what had committed when it started.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, Final, TypeAlias

import asyncpg

from adapters.postgres.errors import StorageClosed, StorageError, one_line, redacted
from adapters.postgres.rows import CommitRows, claimed_jobs
from adapters.postgres.schema import (
    CLAIM_SQL,
    GUARD_SQL,
    JOB_COLUMNS,
    PROGRESS_SQL,
    RENEW_SQL,
    UPSERT_JOB,
    UPSERT_WORKFLOW,
    VERSION_SQL,
    VERSIONS_SQL,
    migrate,
)
from application.ports.storage import StorageUnavailable
from domain.errors import Conflict, WorkflowChanged

__all__ = ["MAX_BATCH", "Kind", "PostgresWriter", "Statements"]

MAX_BATCH: Final[int] = 512
"""The most operations the writer puts in one transaction."""

ALONE_PAIR: Final[int] = 2
"""A batch of up to this many operations that are each one statement runs them one after the other, each in
its own implicit transaction, rather than in one transaction: a job's outcome and the claim that follows it
(the usual pair) cost two round trips instead of BEGIN + three or four + COMMIT. Above it, one transaction
(one WAL flush) is cheaper."""

_CLOSE_SECONDS: Final[float] = 10.0
"""How long :meth:`PostgresWriter.close` waits for reads in flight before it cuts their connections."""

Statements = list[tuple[str, Sequence[Any]]]
if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

    Connection: TypeAlias = PoolConnectionProxy[asyncpg.Record]


class Kind(enum.Enum):
    """What a queued write is: the writer runs each kind its own way inside the batch's transaction."""

    COMMIT = enum.auto()
    CLAIM = enum.auto()
    PROGRESS = enum.auto()
    RENEW = enum.auto()
    EXECUTE = enum.auto()


class _Op:
    __slots__ = ("future", "kind", "payload")

    def __init__(self, kind: Kind, payload: Any, future: asyncio.Future[Any]) -> None:
        self.kind = kind
        self.payload = payload
        self.future = future


_STOP: Final = None  # queued by close(): the writer finishes what is queued before it, then exits


async def _keep_session(connection: asyncpg.Connection) -> None:
    """The pool's reset on release: nothing (asyncpg's default costs a round trip per read; no session
    state is ever changed here, and an open transaction is rolled back by the pool anyway)."""


class PostgresWriter:
    """Owns a database while open: the connection pool, the writing connection and its task; every write
    to the database from this process goes through it (one transaction per batch)."""

    def __init__(
        self, url: str, *, pool_size: int = 10, connect_timeout: float = 10.0, command_timeout: float = 30.0
    ) -> None:
        if pool_size < 2:
            raise ValueError("pool_size must be at least 2 (one writer, one reader)")
        self.url = url
        self.where = f"PostgreSQL at {redacted(url)}"
        """The database as messages name it (never with its password)."""
        self.pool_size = pool_size
        self.connect_timeout = connect_timeout
        self.command_timeout = command_timeout
        self.schema_found: int | None = None
        """The schema version the last :meth:`open` found (0: a new database)."""
        self.migrations_applied = 0
        """How many migrations the last :meth:`open` applied (0 when another process had, or none was due)."""
        self.transactions = 0
        """Transactions the writer committed (a batch is one; a batch retried op by op is several)."""
        self._pool: asyncpg.Pool | None = None
        self._connection: Connection | None = None
        self._queue: asyncio.Queue[_Op | None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._accepting = False

    # --- lifecycle ------------------------------------------------------------------------------------

    async def open(self) -> None:
        """Connect, migrate (once across processes), and start the writer."""
        if self._task is not None:
            return
        try:
            self._pool = await asyncpg.create_pool(
                self.url,
                min_size=2,
                max_size=self.pool_size,
                reset=_keep_session,
                timeout=self.connect_timeout,
                command_timeout=self.command_timeout,
                server_settings={"application_name": "geekblog-tasks"},
            )
            async with self._pool.acquire() as connection:
                self.schema_found, self.migrations_applied = await migrate(connection, self.where)
            self._connection = await self._pool.acquire()
        except StorageError:
            await self._release()
            raise
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            await self._release()
            raise StorageError(f"cannot open {self.where}: {one_line(exc)}") from exc
        except BaseException:
            await self._release()
            raise
        self._queue = asyncio.Queue()
        self._accepting = True
        self._task = asyncio.create_task(self._write_loop(self._queue), name=f"postgres writer {self.where}")

    async def close(self) -> None:
        """Finish the writes already queued, then close the pool."""
        self._accepting = False
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
        pool, self._pool = self._pool, None
        connection, self._connection = self._connection, None
        if pool is None:
            return
        try:
            if connection is not None and not _is_gone(connection):
                with contextlib.suppress(Exception):
                    await pool.release(connection)
            await asyncio.wait_for(pool.close(), _CLOSE_SECONDS)
        except Exception:  # reads still running past the wait (TimeoutError), or a pool already broken
            pool.terminate()

    def check_open(self) -> None:
        if not self._accepting:
            raise StorageClosed(f"{self.where} is not open")

    # --- reads ----------------------------------------------------------------------------------------

    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        """Rows of a read on any connection of the pool (what had committed when it started).

        A read that finds its connection broken (the server ended it) is tried again on a fresh one,
        once: reads change nothing, and the pool then replaces its other connections too."""
        for attempt in (1, 2):
            pool = self._pool
            if pool is None or not self._accepting:
                raise StorageClosed(f"{self.where} is not open")
            try:
                return await pool.fetch(sql, *args)
            except TimeoutError:
                raise StorageUnavailable(f"{self.where}: a read took over {self.command_timeout:g} s") from None
            except _BROKEN as exc:
                if isinstance(exc, ValueError):  # a value the driver cannot send
                    raise
                if attempt == 2:
                    raise _unavailable(self.where, exc) from exc
                await pool.expire_connections()
        raise AssertionError("unreachable")  # pragma: no cover

    async def fetchval(self, sql: str, *args: Any) -> Any:
        rows = await self.fetch(sql, *args)
        return rows[0][0] if rows else None

    # --- writes ---------------------------------------------------------------------------------------

    async def submit(self, kind: Kind, payload: Any) -> Any:
        """Queue one operation for the writer's next transaction; its outcome once that COMMIT returned.

        Queued before the first ``await``: operations apply in the order they were called."""
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
            closed = StorageClosed(f"{self.where} was closed before this write ran")
            while not queue.empty():
                left = queue.get_nowait()
                if left is not None and not left.future.done():
                    left.future.set_exception(closed)

    async def _run_batch(self, batch: list[_Op]) -> None:
        items = [(op.kind, op.payload) for op in batch]
        try:
            outcomes = await self._run_items(items)
        except Exception as exc:  # the connection is gone: every op of the batch fails with it
            outcomes = [exc] * len(items)
        for op, outcome in zip(batch, outcomes, strict=True):
            if op.future.done():  # the caller was cancelled
                continue
            if isinstance(outcome, BaseException):
                op.future.set_exception(outcome)
            else:
                op.future.set_result(outcome)

    async def _writing_connection(self) -> Connection:
        """The writer's connection; a new one from the pool when the last one was lost."""
        connection = self._connection
        if connection is not None and not _is_gone(connection):
            return connection
        self._connection = None  # the pool took a lost connection back itself
        pool = self._pool
        if pool is None:
            raise StorageClosed(f"{self.where} is not open")
        try:
            connection = await pool.acquire(timeout=self.connect_timeout)
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise StorageUnavailable(f"{self.where}: cannot connect: {one_line(exc)}") from exc
        self._connection = connection
        return connection

    async def _discard(self, connection: Connection) -> None:
        """Drop a connection found broken, and have the pool replace the others it holds (a server that
        ended one, restarting or failing over, has most likely ended them all)."""
        if self._connection is connection:
            self._connection = None
        with contextlib.suppress(Exception):  # already taken back by the pool
            connection.terminate()
        if self._pool is not None:
            await self._pool.expire_connections()

    async def _run_items(self, items: list[tuple[Kind, Any]]) -> list[Any]:
        if len(items) <= ALONE_PAIR and all(_statement_alone([item]) is not None for item in items):
            return await self._each_alone(items)
        outcome = await self._attempt(items)
        if not isinstance(outcome, Exception):
            return outcome
        if len(items) == 1:
            return [outcome]
        # Something in the batch broke the transaction: run each op alone so only the culprit fails.
        outcomes: list[Any] = []
        for item in items:
            alone = await self._attempt([item])
            outcomes.extend([alone] if isinstance(alone, Exception) else alone)
        return outcomes

    async def _each_alone(self, items: list[tuple[Kind, Any]]) -> list[Any]:
        """Each of ``items`` as its own statement, in order: each is committed before the next is sent, and
        one whose connection was lost fails alone (the next takes a fresh connection)."""
        outcomes: list[Any] = []
        for item in items:
            try:
                alone = await self._attempt([item])
            except Exception as exc:
                outcomes.append(exc)
                continue
            outcomes.extend([alone] if isinstance(alone, Exception) else alone)
        return outcomes

    async def _attempt(self, items: list[tuple[Kind, Any]]) -> list[Any] | Exception:
        """``items`` in one transaction: an outcome per item, or the error of the statement that failed
        (the transaction rolled back: nothing of it was stored).

        A connection found broken before anything was sent (at ``BEGIN``) is replaced and the transaction
        tried again on a fresh one; broken later, whether the COMMIT landed is unknown, and this raises
        :class:`StorageUnavailable` for every item.
        """
        last: BaseException | None = None
        alone = _statement_alone(items)
        for _ in range(self.pool_size + 1):
            connection = await self._writing_connection()
            if alone is not None:
                try:
                    outcome = await alone(connection)
                except Exception as exc:
                    if not _connection_lost(connection, exc):
                        return exc
                    await self._discard(connection)
                    if _not_stored(exc):  # as a broken BEGIN: tried again on a fresh connection
                        last = exc
                        continue
                    raise _unavailable(self.where, exc) from exc
                self.transactions += 1
                return [outcome]
            transaction = connection.transaction()
            try:
                await transaction.start()
            except Exception as exc:
                if not _connection_lost(connection, exc):
                    raise
                await self._discard(connection)
                last = exc
                continue
            try:
                outcomes = await self._statements(connection, items)
                await transaction.commit()
            except Exception as exc:
                if not _connection_lost(connection, exc):
                    with contextlib.suppress(Exception):
                        await transaction.rollback()
                if _connection_lost(connection, exc):
                    await self._discard(connection)
                    raise _unavailable(self.where, exc) from exc
                return exc
            self.transactions += 1
            return outcomes
        assert last is not None
        raise _unavailable(self.where, last) from last

    async def _statements(self, connection: Connection, items: list[tuple[Kind, Any]]) -> list[Any]:
        """Run ``items`` inside the open transaction; an outcome per item (a ``Conflict`` for a failed guard)."""
        outcomes: list[Any] = []
        index = 0
        while index < len(items):
            kind, payload = items[index]
            if kind is Kind.COMMIT:
                end = index + 1
                while end < len(items) and items[end][0] is Kind.COMMIT:
                    end += 1
                outcomes.extend(await _apply_commits(connection, [queued for _, queued in items[index:end]]))
                index = end
                continue
            if kind is Kind.CLAIM:
                outcomes.append(claimed_jobs(await connection.fetch(CLAIM_SQL, *payload)))
            elif kind is Kind.PROGRESS:
                outcomes.append(_changed(await connection.execute(PROGRESS_SQL, *payload)) > 0)
            elif kind is Kind.RENEW:
                await connection.execute(RENEW_SQL, *payload)
                outcomes.append(None)
            else:
                outcomes.append(await _execute_statements(connection, payload))
            index += 1
        return outcomes


_GUARDED_UPDATE: Final = (
    "UPDATE jobs SET "
    + ", ".join(f"{column} = ${index}" for index, column in enumerate((*JOB_COLUMNS, "parent_id")[1:], start=2))
    + f" WHERE id = $1 AND (${len(JOB_COLUMNS) + 2}::text IS NULL OR lease_owner = ${len(JOB_COLUMNS) + 2})"
    + f" AND (${len(JOB_COLUMNS) + 3}::text[] IS NULL OR state = ANY(${len(JOB_COLUMNS) + 3}::text[]))"
)
"""A guarded commit of the guarded job's own row, when it is all the commit writes: the row is written only
where the guard holds (its owner, its states), checked on the row as it is when the update locks it."""
_CURRENT_SQL: Final = "SELECT state, lease_owner FROM jobs WHERE id = $1"

Alone: TypeAlias = "Callable[[Connection], Awaitable[Any]]"


def _statement_alone(items: list[tuple[Kind, Any]]) -> Alone | None:
    """How to run ``items`` as one statement in its own implicit transaction, when it is one operation that a
    single statement does exactly; None otherwise (a transaction runs it)."""
    if len(items) != 1:
        return None
    kind, payload = items[0]
    if kind is Kind.CLAIM:
        return lambda connection: _claim(connection, payload)
    if kind is Kind.PROGRESS:
        return lambda connection: _progress(connection, payload)
    if kind is Kind.RENEW:
        return lambda connection: _renew(connection, payload)
    if kind is Kind.EXECUTE and len(payload) == 1:
        return lambda connection: _execute_statements(connection, payload)
    if kind is not Kind.COMMIT:
        return None
    commit: CommitRows = payload
    if commit.workflow_versions:
        return None
    if commit.guard is None:
        if commit.job_rows and commit.workflow_rows:
            return None
        return lambda connection: _upsert_alone(connection, commit)
    if commit.workflow_rows or len(commit.job_rows) != 1 or commit.job_rows[0][0] != commit.guard.job_id:
        return None
    return lambda connection: _guarded_alone(connection, commit)


async def _claim(connection: Connection, payload: Any) -> list[Any]:
    return claimed_jobs(await connection.fetch(CLAIM_SQL, *payload))


async def _progress(connection: Connection, payload: Any) -> bool:
    return _changed(await connection.execute(PROGRESS_SQL, *payload)) > 0


async def _renew(connection: Connection, payload: Any) -> None:
    await connection.execute(RENEW_SQL, *payload)


async def _upsert_alone(connection: Connection, commit: CommitRows) -> None:
    """New or unguarded rows of one table: one ``executemany``, atomic on its own (one implicit transaction)."""
    if commit.workflow_rows:
        await connection.executemany(UPSERT_WORKFLOW, commit.workflow_rows)
    elif commit.job_rows:
        await connection.executemany(UPSERT_JOB, commit.job_rows)


async def _guarded_alone(connection: Connection, commit: CommitRows) -> Conflict | None:
    guard = commit.guard
    assert guard is not None
    states = None if guard.states is None else sorted(str(state) for state in guard.states)
    if _changed(await connection.execute(_GUARDED_UPDATE, *commit.job_rows[0], guard.owner, states)) == 1:
        return None
    # Refused: the stored row says why (read after the refusal, so only the message can be newer than it).
    rows = await connection.fetch(_CURRENT_SQL, guard.job_id)
    current = (rows[0][0], rows[0][1]) if rows else None
    return Conflict(guard.problem(current) or f"job {guard.job_id} changed while its commit was checked")


async def _apply_commits(connection: Connection, commits: list[CommitRows]) -> list[Conflict | None]:
    """Apply a run of consecutive commits: one locking SELECT for all their guards, one upsert per table.

    The guards are checked in order against the stored rows as updated by the earlier commits of the run
    (their rows carry each job's state and lease owner), exactly as if run one by one.
    """
    guarded = {commit.guard.job_id for commit in commits if commit.guard is not None}
    current: dict[str, tuple[str, str | None]] = {}
    if guarded:
        rows = await connection.fetch(GUARD_SQL, sorted(guarded))
        current = {row[0]: (row[1], row[2]) for row in rows}
    versions = await _stored_versions(connection, commits)
    bumped: dict[str, int] = {}
    outcomes: list[Conflict | None] = []
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


async def _stored_versions(connection: Connection, commits: list[CommitRows]) -> dict[str, int]:
    """The stored version of every workflow the commits of a run advance, locked until the run's end."""
    ids = sorted({workflow_id for commit in commits for workflow_id in commit.workflow_versions})
    if not ids:
        return {}
    return {row[0]: row[1] for row in await connection.fetch(VERSIONS_SQL, ids)}


async def _execute_statements(connection: Connection, statements: Statements) -> int:
    """Run ``statements`` in order; the rows the first one changed (the rest are skipped when it changed none)."""
    first = -1
    for sql, params in statements:
        changed = _changed(await connection.execute(sql, *params))
        if first < 0:
            first = changed
            if first == 0:
                break
    return max(first, 0)


def _changed(status: str) -> int:
    """Rows a statement changed, from its command tag (``UPDATE 3``, ``INSERT 0 1``, ``DELETE 0``)."""
    try:
        return int(status.rsplit(" ", 1)[-1])
    except ValueError:
        return 0


def _is_gone(connection: Connection) -> bool:
    """Whether the connection was closed (then the pool has taken it back: the proxy refuses every call)."""
    try:
        return connection.is_closed()
    except asyncpg.InterfaceError:
        return True


_BROKEN: Final = (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError, asyncpg.InternalClientError)
"""What a connection the server ended (or the network lost) raises: the socket's errors, the server's
connection errors, and the client's (a closed connection; its protocol stuck in another operation
after the server's farewell message arrived unasked)."""


def _connection_lost(connection: Connection, exc: BaseException) -> bool:
    if _is_gone(connection):
        return True
    if isinstance(exc, ValueError):  # a value the driver cannot send is the op's own problem
        return False
    return isinstance(exc, (*_BROKEN, TimeoutError))


def _not_stored(exc: BaseException) -> bool:
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


def _unavailable(where: str, exc: BaseException) -> StorageUnavailable:
    if isinstance(exc, TimeoutError):
        return StorageUnavailable(f"{where}: a write took too long and was cancelled")
    return StorageUnavailable(f"{where}: the connection was lost ({one_line(exc)})")
