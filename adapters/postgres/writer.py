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
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final, TypeAlias

import asyncpg

from adapters.postgres.errors import StorageClosed, StorageError, one_line, redacted
from adapters.postgres.rows import CommitRows
from adapters.postgres.schema import migrate
from adapters.postgres.statements import (
    Statements,
    apply_commits,
    check_controls,
    claim_alone,
    execute_statements,
    guarded_alone,
    not_stored,
    progress_alone,
    renew_alone,
    upsert_alone,
)
from application.ports.storage import StorageUnavailable

__all__ = ["MAX_BATCH", "Kind", "PostgresWriter", "Statements", "fetch_rows"]

MAX_BATCH: Final[int] = 512
"""The most operations the writer puts in one transaction."""

ALONE_PAIR: Final[int] = 2
"""A batch of up to this many operations that are each one statement runs them one after the other, each in
its own implicit transaction, rather than in one transaction: a job's outcome and the claim that follows it
(the usual pair) cost two round trips instead of BEGIN + three or four + COMMIT, and the outcome's caller
hears of it before the claim is sent. Above it, one transaction (one WAL flush) is cheaper."""

_CLOSE_SECONDS: Final[float] = 10.0
"""How long :meth:`PostgresWriter.close` waits for reads in flight before it cuts their connections."""

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
    CONTROLS = enum.auto()
    """The concurrency keys and rate limits of jobs just claimed, checked under their locks (always in a
    transaction)."""


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
        """Rows of a read on any connection of the pool (what had committed when it started): see
        :func:`fetch_rows`."""
        return await fetch_rows(self._open_pool, self.where, self.command_timeout, sql, *args)

    def _open_pool(self) -> asyncpg.Pool:
        pool = self._pool
        if pool is None or not self._accepting:
            raise StorageClosed(f"{self.where} is not open")
        return pool

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
        if len(items) <= ALONE_PAIR and all(_statement_alone([item]) is not None for item in items):
            for op, item in zip(batch, items, strict=True):  # each caller hears as soon as its own landed
                _settle(op, await self._alone(item))
            return
        try:
            outcomes = await self._run_items(items)
        except Exception as exc:  # the connection is gone: every op of the batch fails with it
            outcomes = [exc] * len(items)
        for op, outcome in zip(batch, outcomes, strict=True):
            _settle(op, outcome)

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

    async def _alone(self, item: tuple[Kind, Any]) -> Any:
        """One operation as its own statement: its outcome (an exception for a failure, its own alone: a lost
        connection fails only this one, and the next operation takes a fresh connection)."""
        try:
            outcome = await self._attempt([item])
        except Exception as exc:
            return exc
        return outcome if isinstance(outcome, Exception) else outcome[0]

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
                    if not_stored(exc):  # as a broken BEGIN: tried again on a fresh connection
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
                outcomes.extend(await apply_commits(connection, [queued for _, queued in items[index:end]]))
                index = end
                continue
            if kind is Kind.CLAIM:
                outcomes.append(await claim_alone(connection, payload))
            elif kind is Kind.PROGRESS:
                outcomes.append(await progress_alone(connection, payload))
            elif kind is Kind.RENEW:
                await renew_alone(connection, payload)
                outcomes.append(None)
            elif kind is Kind.CONTROLS:
                outcomes.append(await check_controls(connection, payload))
            else:
                outcomes.append(await execute_statements(connection, payload))
            index += 1
        return outcomes


Alone: TypeAlias = "Callable[[Connection], Awaitable[Any]]"


def _settle(op: _Op, outcome: Any) -> None:
    if op.future.done():  # the caller was cancelled
        return
    if isinstance(outcome, BaseException):
        op.future.set_exception(outcome)
    else:
        op.future.set_result(outcome)


async def fetch_rows(
    pool_of: Callable[[], asyncpg.Pool], where: str, command_timeout: float, sql: str, *args: Any
) -> list[asyncpg.Record]:
    """Rows of a read on a connection of the pool ``pool_of()`` gives (it raises :class:`StorageClosed`
    when there is none), as the storage's errors: the writer's reads and the blocking reads alike.

    A read that finds its connection broken (the server ended it) is tried again on a fresh one,
    once: reads change nothing, and the pool then replaces its other connections too."""
    for attempt in (1, 2):
        pool = pool_of()
        try:
            return await pool.fetch(sql, *args)
        except TimeoutError:
            raise StorageUnavailable(f"{where}: a read took over {command_timeout:g} s") from None
        except _BROKEN as exc:
            if isinstance(exc, ValueError):  # a value the driver cannot send
                raise
            if attempt == 2:
                raise _unavailable(where, exc) from exc
            await pool.expire_connections()
    raise AssertionError("unreachable")  # pragma: no cover


def _statement_alone(items: list[tuple[Kind, Any]]) -> Alone | None:
    """How to run ``items`` as one statement in its own implicit transaction, when it is one operation that a
    single statement does exactly; None otherwise (a transaction runs it)."""
    if len(items) != 1:
        return None
    kind, payload = items[0]
    if kind is Kind.CLAIM:
        return lambda connection: claim_alone(connection, payload)
    if kind is Kind.PROGRESS:
        return lambda connection: progress_alone(connection, payload)
    if kind is Kind.RENEW:
        return lambda connection: renew_alone(connection, payload)
    if kind is Kind.EXECUTE and len(payload) == 1:
        return lambda connection: execute_statements(connection, payload)
    if kind is not Kind.COMMIT:
        return None
    commit: CommitRows = payload
    if commit.workflow_versions or commit.tick is not None or commit.idempotency is not None:
        return None
    if commit.guard is None:
        if commit.job_rows and commit.workflow_rows:
            return None
        return lambda connection: upsert_alone(connection, commit)
    if commit.workflow_rows or len(commit.job_rows) != 1 or commit.job_rows[0][0] != commit.guard.job_id:
        return None
    return lambda connection: guarded_alone(connection, commit)


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


def _unavailable(where: str, exc: BaseException) -> StorageUnavailable:
    if isinstance(exc, TimeoutError):
        return StorageUnavailable(f"{where}: a write took too long and was cancelled")
    return StorageUnavailable(f"{where}: the connection was lost ({one_line(exc)})")
