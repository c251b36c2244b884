"""PostgreSQL beyond the contract suite: migrations applied once by engines opening together, what a
database that cannot be used says, the settings and the container that select it, and an embedded
engine running a job, a chain and a chord on it end to end."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator

import asyncpg
import msgspec
import pytest

from adapters.postgres import (
    SCHEMA_VERSION,
    PostgresJobRepository,
    PostgresProjectRepository,
    SchemaTooNew,
    StorageClosed,
    StorageError,
    storage_failure,
)
from application.engine import Engine
from application.ports import Commit
from application.ports.storage import StorageFull, StorageLocked, StorageUnavailable
from domain.errors import NotStorable
from domain.job import Job
from domain.states import JobState
from entrypoints.celery_compat import chain, chord, embedded_engine, group
from entrypoints.container import Container
from entrypoints.server import storage_description
from entrypoints.settings import Settings, SettingsError
from tests.integration import compat_tasks, limit_tasks
from tests.integration.compat_tasks import add, mul, total
from tests.integration.limit_tasks import huge_int
from tests.support.postgres import CuttableProxy, create_database, drop_database, empty_tables, url_of

URL_WITH_PASSWORD = "postgresql://geek:s3cret@127.0.0.1:5432/somewhere"


@pytest.fixture
def fresh_url() -> Iterator[str]:
    """A new, empty database for this test alone (no schema yet)."""
    url = create_database()
    try:
        yield url
    finally:
        drop_database(url)


async def _applied(url: str) -> list[tuple[int, int]]:
    connection = await asyncpg.connect(url)
    try:
        rows = await connection.fetch("SELECT version, applied_by FROM geekblog_schema ORDER BY version")
    finally:
        await connection.close()
    return [(row[0], row[1]) for row in rows]


async def _end_sessions_of(url: str) -> int:
    """End every session of the database ``url`` names (what a server restart or failover does to them)."""
    admin = await asyncpg.connect(url_of("postgres"))
    try:
        ended: int = await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = $1", url.rsplit("/", 1)[1]
        )
    finally:
        await admin.close()
    return ended


class TestMigrations:
    async def test_engines_opening_a_new_database_together_migrate_it_once(self, fresh_url: str) -> None:
        repos = [PostgresJobRepository(fresh_url) for _ in range(4)]

        await asyncio.gather(*(repo.open() for repo in repos))
        try:
            applied = sorted(repo.migrations_applied for repo in repos)
            assert applied == [0, 0, 0, SCHEMA_VERSION]
            migrator = next(repo for repo in repos if repo.migrations_applied)
            assert migrator.schema_found == 0
            assert {repo.schema_found for repo in repos if repo is not migrator} == {SCHEMA_VERSION}
            rows = await _applied(fresh_url)
            assert [version for version, _ in rows] == list(range(1, SCHEMA_VERSION + 1))
            assert len({backend for _, backend in rows}) == 1  # one session applied them all
            # every one of them works on the schema
            await repos[1].commit(Commit(jobs=[Job(id="a", task="t", due_at=1.0, created_at=1.0)]))
            assert await repos[3].get("a") is not None
        finally:
            await asyncio.gather(*(repo.close() for repo in repos))

    async def test_reopening_applies_nothing(self, fresh_url: str) -> None:
        first = PostgresJobRepository(fresh_url)
        await first.open()
        await first.close()
        again = PostgresJobRepository(fresh_url)
        await again.open()
        await again.close()

        assert (first.schema_found, first.migrations_applied) == (0, SCHEMA_VERSION)
        assert (again.schema_found, again.migrations_applied) == (SCHEMA_VERSION, 0)
        assert len(await _applied(fresh_url)) == SCHEMA_VERSION

    async def test_a_schema_newer_than_the_engine_is_refused_and_left_alone(self, fresh_url: str) -> None:
        repo = PostgresJobRepository(fresh_url)
        await repo.open()
        await repo.close()
        connection = await asyncpg.connect(fresh_url)
        try:
            await connection.execute("INSERT INTO geekblog_schema (version) VALUES ($1)", SCHEMA_VERSION + 1)
        finally:
            await connection.close()

        with pytest.raises(SchemaTooNew, match=f"schema version {SCHEMA_VERSION + 1}"):
            await PostgresJobRepository(fresh_url).open()
        assert len(await _applied(fresh_url)) == SCHEMA_VERSION + 1


class TestUnusableDatabases:
    async def test_a_missing_database_is_one_storage_error_naming_it(self) -> None:
        url = url_of("gb_test_does_not_exist")
        with pytest.raises(StorageError) as caught:
            await PostgresJobRepository(url).open()
        message = str(caught.value)
        assert "gb_test_does_not_exist" in message and "\n" not in message

    async def test_a_refused_connection_is_one_storage_error_without_the_password(self) -> None:
        with pytest.raises(StorageError) as caught:
            await PostgresJobRepository("postgresql://geek:s3cret@127.0.0.1:1/x", connect_timeout=2).open()
        assert "127.0.0.1:1" in str(caught.value)
        assert "s3cret" not in str(caught.value)

    async def test_calls_on_a_closed_repository_are_refused(self, postgres_url: str) -> None:
        repo = PostgresJobRepository(postgres_url)
        with pytest.raises(StorageUnavailable):
            await repo.get("a")
        with pytest.raises(StorageUnavailable):
            await repo.commit(Commit(jobs=[Job(id="a", task="t", due_at=1.0, created_at=1.0)]))

    async def test_connections_the_server_ended_are_replaced_without_failing_a_call(self, fresh_url: str) -> None:
        repo = PostgresJobRepository(fresh_url)
        await repo.open()
        try:
            for round_ in range(3):
                await repo.commit(Commit(jobs=[Job(id=f"before-{round_}", task="t", due_at=1.0, created_at=1.0)]))
                assert await _end_sessions_of(fresh_url) >= 1
                # an idle connection found broken at BEGIN (writes) or at once (reads) is replaced and the
                # call tried again on a fresh one: nothing had been sent, so nothing can happen twice
                await repo.commit(Commit(jobs=[Job(id=f"after-{round_}", task="t", due_at=1.0, created_at=1.0)]))
                assert await repo.get(f"after-{round_}") is not None
            assert await _end_sessions_of(fresh_url) >= 1
            assert len(await repo.get_many([f"before-{i}" for i in range(3)])) == 3
        finally:
            await asyncio.wait_for(repo.close(), 5)

    def test_driver_errors_read_as_the_applications_storage_errors(self) -> None:
        assert isinstance(storage_failure(asyncpg.DiskFullError("no space")), StorageFull)
        assert isinstance(storage_failure(asyncpg.LockNotAvailableError("busy")), StorageLocked)
        assert isinstance(storage_failure(asyncpg.ConnectionDoesNotExistError("gone")), StorageUnavailable)
        assert isinstance(storage_failure(asyncpg.InterfaceError("connection is closed")), StorageUnavailable)
        assert isinstance(storage_failure(ConnectionRefusedError(111, "refused")), StorageUnavailable)
        assert storage_failure(asyncpg.UniqueViolationError("dup")) is None
        assert storage_failure(ValueError("not storage")) is None


class TestBlockingReads:
    """PostgreSQL's blocking reads (``repo.blocking``, Celery's synchronous API): on a loop of their own, so
    they answer on any thread, the engine's loop thread included; what they raise is what async reads do."""

    async def test_the_loop_and_a_thread_read_what_another_engine_just_committed(self, postgres_url: str) -> None:
        await empty_tables(postgres_url)
        mine, other = PostgresJobRepository(postgres_url), PostgresJobRepository(postgres_url)
        await mine.open()
        await other.open()
        try:
            job = Job(id="a", task="t", due_at=1.0, created_at=1.0)
            await other.commit(Commit(jobs=[job]))
            assert mine.blocking.peek("a") == job  # on this loop's own thread
            assert await asyncio.to_thread(mine.blocking.peek, "a") == job
            changed = msgspec.structs.replace(job, priority=7)
            await other.commit(Commit(jobs=[changed]))
            assert mine.blocking.peek("a") == changed  # read committed: each read sees the latest commit
            assert await asyncio.to_thread(mine.blocking.peek_many, ["a", "b"]) == {"a": changed}
        finally:
            await mine.close()
            await other.close()

    async def test_reads_outside_open_and_close_are_refused_as_async_reads_are(self, postgres_url: str) -> None:
        await empty_tables(postgres_url)
        repo = PostgresJobRepository(postgres_url)
        with pytest.raises(StorageClosed):
            repo.blocking.peek("a")
        await repo.open()
        assert repo.blocking.peek("a") is None
        await repo.close()
        with pytest.raises(StorageClosed):
            await asyncio.to_thread(repo.blocking.peek_workflow, "a")
        with pytest.raises(StorageClosed):
            await repo.get_workflow("a")

    async def test_a_read_while_the_database_is_down_raises_what_an_async_read_raises(self, postgres_url: str) -> None:
        await empty_tables(postgres_url)
        with CuttableProxy() as proxy:
            repo = PostgresJobRepository(proxy.url_of(postgres_url), connect_timeout=2)
            await repo.open()
            try:
                assert await asyncio.to_thread(repo.blocking.peek, "a") is None
                proxy.cut()
                with pytest.raises(StorageUnavailable) as from_async:
                    await repo.get("a")
                with pytest.raises(StorageUnavailable) as from_thread:
                    await asyncio.to_thread(repo.blocking.peek, "a")
                with pytest.raises(StorageUnavailable) as on_loop:
                    repo.blocking.peek("a")
            finally:
                await asyncio.wait_for(repo.close(), 10)
        assert "the connection was lost" in str(from_async.value)
        for blocking in (from_thread.value, on_loop.value):
            assert (type(blocking), str(blocking)) == (type(from_async.value), str(from_async.value))

    async def test_a_read_that_cannot_finish_is_cut_after_the_command_timeout(self, postgres_url: str) -> None:
        await empty_tables(postgres_url)
        repo = PostgresJobRepository(postgres_url, command_timeout=0.5)
        await repo.open()
        locker = await asyncpg.connect(postgres_url)
        try:
            transaction = locker.transaction()
            await transaction.start()
            await locker.execute("LOCK TABLE jobs IN ACCESS EXCLUSIVE MODE")  # every read of jobs waits
            started = time.monotonic()
            with pytest.raises(StorageUnavailable) as from_thread:
                await asyncio.to_thread(repo.blocking.peek, "a")
            took = time.monotonic() - started
            with pytest.raises(StorageUnavailable) as from_async:
                await repo.get("a")
            await transaction.rollback()
            assert 0.4 < took < 5, took
            assert str(from_thread.value) == str(from_async.value) and "a read took over 0.5 s" in str(from_async.value)
            assert repo.blocking.peek("a") is None  # the lock gone, reads work again
        finally:
            await locker.close()
            await repo.close()


class TestSelection:
    def test_a_database_url_selects_postgres_and_the_sqlite_default_stays(self) -> None:
        assert Settings.from_env({}).persistence == "sqlite"
        chosen = Settings.from_env({"GEEKBLOG_DATABASE_URL": URL_WITH_PASSWORD})
        assert (chosen.persistence, chosen.database_url) == ("postgres", URL_WITH_PASSWORD)
        assert Settings.from_env({"GEEKBLOG_DATABASE_URL": "postgres://h/db"}).persistence == "postgres"
        assert Settings.from_env({"GEEKBLOG_DB_PATH": "/tmp/x.db"}).db_path == "/tmp/x.db"

    @pytest.mark.parametrize(
        ("environ", "needle"),
        [
            ({"GEEKBLOG_DATABASE_URL": "mysql://root@h/db"}, "postgresql://"),
            ({"GEEKBLOG_DATABASE_URL": "/var/lib/db"}, "postgresql://"),
            ({"GEEKBLOG_DATABASE_URL": "postgresql://h:port/db"}, "GEEKBLOG_DATABASE_URL"),
            ({"GEEKBLOG_DATABASE_URL": URL_WITH_PASSWORD, "GEEKBLOG_PERSISTENCE": "memory"}, "only one"),
            ({"GEEKBLOG_DATABASE_URL": URL_WITH_PASSWORD, "GEEKBLOG_PERSISTENCE": "sqlite"}, "only one"),
            ({"GEEKBLOG_PERSISTENCE": "postgres"}, "GEEKBLOG_DATABASE_URL"),
        ],
    )
    def test_a_bad_database_setting_is_one_line_without_the_password(
        self, environ: dict[str, str], needle: str
    ) -> None:
        with pytest.raises(SettingsError) as caught:
            Settings.from_env(environ)
        message = str(caught.value)
        assert needle in message and "\n" not in message and "s3cret" not in message

    def test_the_pool_the_timeouts_and_the_cancel_wait_come_from_the_environment(self) -> None:
        settings = Settings.from_env(
            {
                "GEEKBLOG_DATABASE_URL": URL_WITH_PASSWORD,
                "GEEKBLOG_PG_POOL_SIZE": "4",
                "GEEKBLOG_PG_CONNECT_TIMEOUT": "2.5",
                "GEEKBLOG_PG_COMMAND_TIMEOUT": "7",
                "GEEKBLOG_CANCEL_TIMEOUT": "1.5",
            }
        )
        container = Container(settings=settings)
        repo = container.repo()
        assert isinstance(repo, PostgresJobRepository)
        assert (repo.writer.pool_size, repo.writer.connect_timeout, repo.writer.command_timeout) == (4, 2.5, 7.0)
        assert (repo.blocking.connect_timeout, repo.blocking.command_timeout) == (2.5, 7.0)
        assert container.peers().cancel_timeout == 1.5
        defaults = Container(settings=Settings(database_url=URL_WITH_PASSWORD))
        default_repo = defaults.repo()
        assert isinstance(default_repo, PostgresJobRepository)
        assert (default_repo.writer.pool_size, default_repo.writer.command_timeout) == (10, 30.0)
        assert defaults.peers().cancel_timeout == 5.0

    @pytest.mark.parametrize(
        ("name", "value"),
        [
            ("GEEKBLOG_PG_POOL_SIZE", "1"),
            ("GEEKBLOG_PG_POOL_SIZE", "many"),
            ("GEEKBLOG_PG_CONNECT_TIMEOUT", "0"),
            ("GEEKBLOG_PG_COMMAND_TIMEOUT", "-3"),
            ("GEEKBLOG_CANCEL_TIMEOUT", "0"),
        ],
    )
    def test_a_bad_pool_size_or_timeout_is_one_line_naming_it(self, name: str, value: str) -> None:
        with pytest.raises(SettingsError) as caught:
            Settings.from_env({"GEEKBLOG_DATABASE_URL": URL_WITH_PASSWORD, name: value})
        assert name in str(caught.value) and "\n" not in str(caught.value)

    def test_the_container_wires_postgres_into_every_persistence_choice(self) -> None:
        container = Container(settings=Settings(database_url=URL_WITH_PASSWORD))
        repo = container.repo()
        assert isinstance(repo, PostgresJobRepository)
        assert isinstance(container.projects(), PostgresProjectRepository)
        assert container.storage_errors() is storage_failure
        assert container.thread_access() is repo.blocking  # Celery's blocking reads, on a loop of their own
        assert container.engine_settings().exclusive_storage is False  # other engines' leases are not stale
        assert Container(settings=Settings(persistence="memory")).engine_settings().exclusive_storage is True
        # a dead engine's jobs are recovered within a lease of its expiry (a minute at most), not a minute
        short = Container(settings=Settings(database_url=URL_WITH_PASSWORD, lease_seconds=3)).engine_settings()
        assert (short.lease_seconds, short.maintenance_interval) == (3, 3)
        assert container.engine_settings().maintenance_interval == 60
        assert "s3cret" not in repr(repo) and "s3cret" not in storage_description(container.settings())


@pytest.fixture
async def pg_engine(postgres_url: str) -> AsyncIterator[Engine]:
    await empty_tables(postgres_url)
    compat_tasks.CALLS.clear()
    modules = ["tests.integration.compat_tasks", "tests.integration.limit_tasks"]
    async with embedded_engine(task_modules=modules, database_url=postgres_url) as engine:
        yield engine


class TestEmbeddedEngineOnPostgres:
    async def test_a_job_a_chain_and_a_chord_run_end_to_end(self, pg_engine: Engine) -> None:
        assert isinstance(pg_engine.repo, PostgresJobRepository)

        job = await add.delay(2, 3)
        assert await job.get(timeout=10) == 5

        steps = await chain(add.s(1, 2), mul.s(10), add.s(5)).apply_async()
        assert await steps.get(timeout=10) == 35

        joined = await chord([add.s(i, i) for i in range(10)], total.s()).apply_async()
        assert await joined.get(timeout=10) == 90

        nested = await chain(add.s(1, 1), group(mul.s(2), mul.s(3)), total.s()).apply_async()
        assert await nested.get(timeout=10) == 10

        stored = await pg_engine.repo.get(job.id)
        assert stored is not None and stored.state == "SUCCESS" and stored.result == 5
        assert ("total", [0, 2, 4, 6, 8, 10, 12, 14, 16, 18]) in compat_tasks.CALLS


class TestWhatCannotBeStored:
    """Refused as on SQLite (``NotStorable``, nothing of that commit stored), and only that commit."""

    @pytest.mark.parametrize(
        "bad",
        [
            Job(id="big", task="t", due_at=1.0, created_at=1.0, priority=2**63),
            Job(id="big", task="t", due_at=1.0, created_at=1.0, max_retries=-(2**63) - 1),
            Job(id="big", task="t", due_at=1.0, created_at=1.0, state=JobState.SUCCESS, result=object()),
            Job(id="big", task="t\x00", due_at=1.0, created_at=1.0),
            Job(id="big", task="t\ud800", due_at=1.0, created_at=1.0),
        ],
        ids=["priority", "max_retries", "result-not-json", "nul", "surrogate"],
    )
    async def test_a_value_postgres_cannot_hold_fails_its_commit_alone(self, postgres_url: str, bad: Job) -> None:
        await empty_tables(postgres_url)
        repo = PostgresJobRepository(postgres_url)
        await repo.open()
        try:
            good = [Job(id=f"good-{i}", task="t", due_at=1.0, created_at=1.0) for i in range(2)]
            outcomes = await asyncio.gather(
                repo.commit(Commit(jobs=[good[0]])),
                repo.commit(Commit(jobs=[bad, Job(id="with-it", task="t", due_at=1.0, created_at=1.0)])),
                repo.commit(Commit(jobs=[good[1]])),
                return_exceptions=True,
            )
            assert outcomes[0] is None and outcomes[2] is None
            assert isinstance(outcomes[1], NotStorable), outcomes[1]
            assert await repo.get_many(["good-0", "good-1", "big", "with-it"]) == {job.id: job for job in good}
        finally:
            await repo.close()

    async def test_a_result_past_64_bits_fails_its_job_with_result_not_storable(self, pg_engine: Engine) -> None:
        limit_tasks.RUNS.clear()
        handle = await huge_int.delay()
        with pytest.raises(TypeError, match="64-bit signed range"):
            await handle.get(timeout=10)
        job = await pg_engine.jobs.get(handle.id)
        assert job.state == "FAILURE" and job.error is not None and job.error.type == "ResultNotStorable"
        assert job.attempts == 1 and limit_tasks.RUNS["huge_int"] == 1
