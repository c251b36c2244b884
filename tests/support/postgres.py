"""PostgreSQL for tests: a database of their own per run (``gb_test_<random>``, dropped ``WITH (FORCE)``),
emptied between tests, on the server the machine runs (127.0.0.1:5432, trust authentication).

``GEEKBLOG_TEST_POSTGRES_URL`` names another server (a URL to its maintenance database, ``postgres``).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from adapters.postgres import TABLES

SERVER_URL = os.environ.get("GEEKBLOG_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")

T = TypeVar("T")


def url_of(database: str) -> str:
    """The URL of ``database`` on the test server."""
    parts = urlsplit(SERVER_URL)
    return urlunsplit((parts.scheme, parts.netloc, f"/{database}", parts.query, ""))


def _run(make: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine on a loop of its own, in a thread of its own (never the test's loop)."""
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["value"] = asyncio.run(make())  # type: ignore[arg-type]
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=target, name="postgres-test-admin")
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    value: T = outcome["value"]
    return value


async def _admin(sql: str) -> None:
    connection = await asyncpg.connect(SERVER_URL, timeout=10)
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


def create_database() -> str:
    """A new empty database; its URL."""
    name = f"gb_test_{secrets.token_hex(6)}"
    _run(lambda: _admin(f'CREATE DATABASE "{name}"'))
    return url_of(name)


def drop_database(url: str) -> None:
    """Drop the database ``url`` names, whoever is still connected to it."""
    name = urlsplit(url).path.lstrip("/")
    assert name.startswith("gb_test_"), name
    _run(lambda: _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def empty_tables(url: str) -> None:
    """Delete every row of every table the engine made and restart their sequences (the schema stays), so
    tests start alike. ``DELETE``, not ``TRUNCATE``: on the few rows a test leaves it takes a millisecond
    where ``TRUNCATE`` (new files for every table and index) takes a quarter of a second."""
    connection = await asyncpg.connect(url, timeout=10)
    try:
        present = await connection.fetch("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")
        tables = [table for table in TABLES if table in {row[0] for row in present}]
        sequences = await connection.fetch("SELECT sequencename FROM pg_sequences WHERE schemaname = current_schema()")
        statements = [f"DELETE FROM {table}" for table in tables]
        statements += [f'ALTER SEQUENCE "{row[0]}" RESTART' for row in sequences]
        if statements:
            await connection.execute("; ".join(statements))
    finally:
        await connection.close()


def empty_tables_blocking(url: str) -> None:
    """:func:`empty_tables` for synchronous callers (on a loop and a thread of its own)."""
    _run(lambda: empty_tables(url))


async def _fetch(url: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(url, timeout=10)
    try:
        return await connection.fetch(sql, *args)
    finally:
        await connection.close()


def fetch_blocking(url: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    """The rows of ``sql`` on a connection of its own (what another process would see), blocking."""
    return _run(lambda: _fetch(url, sql, *args))


class CuttableProxy:
    """A TCP proxy to the test server on a free local port, on a thread and a loop of its own, that a test
    can :meth:`cut`: its connections end and new ones are refused, as when the server goes down."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="postgres-test-proxy", daemon=True)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.port = 0

    def __enter__(self) -> CuttableProxy:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(10)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def __exit__(self, *_: object) -> None:
        self.cut()
        asyncio.run_coroutine_threadsafe(self._finish(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def url_of(self, url: str) -> str:
        """``url`` (a database on the test server) through this proxy."""
        parts = urlsplit(url)
        user = f"{parts.username}@" if parts.username else ""
        return urlunsplit((parts.scheme, f"{user}127.0.0.1:{self.port}", parts.path, parts.query, ""))

    def cut(self) -> None:
        """End every connection through the proxy, and refuse new ones."""
        asyncio.run_coroutine_threadsafe(self._cut(), self._loop).result(10)

    async def _listen(self) -> asyncio.Server:
        return await asyncio.start_server(self._serve, "127.0.0.1", 0)

    async def _cut(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()

    async def _finish(self) -> None:
        others = asyncio.all_tasks() - {asyncio.current_task()}
        if others:
            await asyncio.wait(others, timeout=5)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        parts = urlsplit(SERVER_URL)
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(parts.hostname, parts.port or 5432)
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, upstream_writer}
        try:
            await asyncio.gather(_pipe(reader, upstream_writer), _pipe(upstream_reader, writer))
        finally:
            for each in (writer, upstream_writer):
                self._writers.discard(each)
                each.transport.abort()


async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    try:
        while data := await source.read(65536):
            sink.write(data)
            await sink.drain()
    except OSError:
        pass
    finally:
        sink.transport.abort()
