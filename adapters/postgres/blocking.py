"""Blocking reads of a PostgreSQL database from any thread, the engine's own loop thread included.

Celery's API is synchronous: ``AsyncResult.state`` is read inside async tasks and on the loop, ``.get()``
blocks a sync task's thread. asyncpg has no blocking API, and a read on the engine's loop cannot await
that loop. So these reads run on an event loop of their own, on a daemon thread, with a small pool of
their own connections (read only, read committed: each read sees what had committed when it started);
the caller's thread waits for the answer. The statements and the row mapping are the repository's
(:mod:`~adapters.postgres.reads`), and so are the errors (:func:`~adapters.postgres.writer.fetch_rows`):
a read while the database is down raises the same ``StorageUnavailable`` as an async read. Every read is
bounded: by the driver (``command_timeout``, as the async reads are), by the server (``statement_timeout``,
a second later, should the driver's cancel not arrive), and by the caller's wait, which also covers
getting a connection.

Commits stay on the engine's writer (group commit, call order kept): :meth:`commit_from_thread` says so,
and the thread bridge then sends them through the loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections.abc import Coroutine, Sequence
from typing import Any, Final, TypeVar

import asyncpg

from adapters.postgres.errors import StorageClosed, StorageError, one_line
from adapters.postgres.reads import children_of, job_by_id, jobs_by_ids, workflow_by_id
from adapters.postgres.writer import fetch_rows
from application.ports import Commit
from application.ports.storage import StorageUnavailable
from domain.job import Job
from domain.workflow import Workflow

__all__ = ["PostgresBlockingReader"]

T = TypeVar("T")

_CLOSE_SECONDS: Final[float] = 10.0
"""How long :meth:`PostgresBlockingReader.close` waits for reads in flight before it cuts their connections."""


class PostgresBlockingReader:
    """Point reads of jobs and workflows for callers on any thread, blocking; open while its repository is.

    It is the repository's ``BlockingAccess`` (``entrypoints.compat.threads``): reads only.
    """

    def __init__(
        self,
        url: str,
        *,
        where: str,
        pool_size: int = 4,
        connect_timeout: float = 10.0,
        command_timeout: float = 30.0,
    ) -> None:
        self.url = url
        self.where = where
        self.pool_size = pool_size
        self.connect_timeout = connect_timeout
        self.command_timeout = command_timeout
        self.wait_limit = connect_timeout + command_timeout
        """The longest a caller waits for one read: a new connection, then the statement."""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopped: concurrent.futures.Future[None] | None = None
        self._pool: asyncpg.Pool | None = None

    # --- lifecycle ------------------------------------------------------------------------------------

    async def open(self) -> None:
        """Start the reads' loop and thread and connect their pool."""
        if self._loop is not None:
            return
        loop = asyncio.new_event_loop()
        stopped: concurrent.futures.Future[None] = concurrent.futures.Future()
        thread = threading.Thread(target=_serve, args=(loop, stopped), name="postgres-blocking-reads", daemon=True)
        thread.start()
        self._loop, self._thread, self._stopped = loop, thread, stopped
        try:
            self._pool = await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(self._connect(), loop))
        except BaseException as exc:
            await self._stop()
            if isinstance(exc, (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)):
                raise StorageError(f"cannot open {self.where} for blocking reads: {one_line(exc)}") from exc
            raise

    async def _connect(self) -> asyncpg.Pool:
        # The server's limit backs up the driver's, which cancels first and is reported as the async reads' is.
        statement_ms = str(int(self.command_timeout * 1000) + 1000)
        return await asyncpg.create_pool(
            self.url,
            min_size=1,
            max_size=self.pool_size,
            reset=_keep_session,
            timeout=self.connect_timeout,
            command_timeout=self.command_timeout,
            server_settings={
                "application_name": "geekblog-tasks-reads",
                "default_transaction_isolation": "read committed",
                "default_transaction_read_only": "on",
                "statement_timeout": statement_ms,
            },
        )

    async def close(self) -> None:
        """Stop taking reads, cancel those in flight (their callers get :class:`StorageClosed`), close the
        pool, and stop the thread."""
        pool, self._pool = self._pool, None
        if self._loop is None:
            return
        try:
            if pool is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(_close(pool), self._loop))
        finally:
            await self._stop()

    async def _stop(self) -> None:
        loop, stopped = self._loop, self._stopped
        self._loop = self._thread = self._stopped = None
        if loop is None or stopped is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        await asyncio.wrap_future(stopped)

    # --- BlockingAccess -------------------------------------------------------------------------------

    def commit_from_thread(self, commit: Commit) -> bool:
        """Never: commits go through the engine's one writer, in call order (the caller then sends this
        one through the loop)."""
        return False

    def peek(self, job_id: str) -> Job | None:
        return self._run(job_by_id(self._fetch, job_id))

    def peek_many(self, job_ids: Sequence[str]) -> dict[str, Job]:
        return self._run(jobs_by_ids(self._fetch, job_ids))

    def peek_children(self, job_id: str) -> list[Job]:
        return self._run(children_of(self._fetch, job_id))

    def peek_workflow(self, workflow_id: str) -> Workflow | None:
        return self._run(workflow_by_id(self._fetch, workflow_id))

    # --- the reads' loop ------------------------------------------------------------------------------

    async def _fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        return await fetch_rows(self._open_pool, self.where, self.command_timeout, sql, *args)

    def _open_pool(self) -> asyncpg.Pool:
        pool = self._pool
        if pool is None:
            raise StorageClosed(f"{self.where} is not open")
        return pool

    def _run(self, read: Coroutine[Any, Any, T]) -> T:
        """Run ``read`` on the reads' loop and wait for it, at most :attr:`wait_limit` seconds."""
        loop = self._loop
        if loop is None or self._pool is None:
            read.close()
            raise StorageClosed(f"{self.where} is not open")
        if threading.current_thread() is self._thread:  # pragma: no cover - nothing else runs there
            read.close()
            raise RuntimeError("a blocking read on the blocking reads' own loop would never finish")
        try:
            future = asyncio.run_coroutine_threadsafe(read, loop)
        except RuntimeError:  # the loop closed in between
            read.close()
            raise StorageClosed(f"{self.where} is not open") from None
        try:
            return future.result(self.wait_limit)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise StorageUnavailable(f"{self.where}: a read took over {self.wait_limit:g} s") from None
        except concurrent.futures.CancelledError:
            raise StorageClosed(f"{self.where} was closed during the read") from None


def _serve(loop: asyncio.AbstractEventLoop, stopped: concurrent.futures.Future[None]) -> None:
    """The reads' thread: their loop until it is stopped; then reads still pending are cancelled (their
    callers are told) and the loop closed."""
    asyncio.set_event_loop(loop)
    try:
        loop.run_forever()
        pending = asyncio.all_tasks(loop)
        for task in pending:
            task.cancel()
        if pending:
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
    finally:
        loop.close()
        stopped.set_result(None)


async def _keep_session(connection: asyncpg.Connection) -> None:
    """The pool's reset on release: nothing (asyncpg's default costs a round trip per read, and these
    reads change no session state), as the writer's pool."""


async def _close(pool: asyncpg.Pool) -> None:
    """Close the pool, cutting the connections of reads still running after a while."""
    try:
        await asyncio.wait_for(pool.close(), _CLOSE_SECONDS)
    except Exception:
        pool.terminate()
