"""What only the SQLite repository does: durability, migrations, the engine lock, group commit."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from adapters.sqlite import (
    MIGRATIONS,
    SCHEMA_VERSION,
    NotADatabase,
    SchemaTooNew,
    SqliteJobRepository,
    StorageClosed,
    StorageError,
    StorageLocked,
)
from application.ports import Commit, Guard, JobFilter
from domain.canvas import Chord, Group, Signature
from domain.errors import Conflict
from domain.job import Job
from domain.states import JobState
from domain.workflow import Workflow

NOW = 1_000.0


def make_job(job_id: str, **changes: Any) -> Job:
    fields: dict[str, Any] = {"task": "tasks.add", "due_at": NOW, "created_at": NOW}
    fields.update(changes)
    return Job(id=job_id, **fields)


@contextlib.contextmanager
def raw(path: Path) -> Iterator[sqlite3.Connection]:
    """A plain sqlite3 connection to inspect or tamper with the file; always closed."""
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        yield connection
    finally:
        connection.close()


@contextlib.asynccontextmanager
async def opened(path: Path, **options: Any) -> AsyncIterator[SqliteJobRepository]:
    repo = SqliteJobRepository(path, **options)
    await repo.open()
    try:
        yield repo
    finally:
        await repo.close()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "var" / "tasks.db"


@pytest.fixture
def garbage_db(db_path: Path) -> Path:
    db_path.parent.mkdir(parents=True)
    db_path.write_bytes(b"this is not a database, just some text that is long enough " * 20)
    return db_path


class TestDurability:
    async def test_jobs_and_workflows_survive_close_and_reopen(self, db_path: Path) -> None:
        workflow = Workflow(
            id="wf",
            canvas=Chord(header=[Signature(task="a"), Group(members=[Signature(task="b")])], body=Signature(task="c")),
            created_at=NOW,
        )
        async with opened(db_path) as repo:
            await repo.commit(Commit(jobs=[make_job("b"), make_job("a", workflow_id="wf")], workflows=[workflow]))
            await repo.commit(Commit(jobs=[make_job("c", args=["ü", {"x": [1]}])]))

        async with opened(db_path) as repo:
            assert await repo.get("c") == make_job("c", args=["ü", {"x": [1]}])
            assert await repo.get_workflow("wf") == workflow
            page = await repo.list_jobs(JobFilter(), limit=10)
            assert [job.id for job in page.items] == ["c", "a", "b"]
            claimed = await repo.claim(owner="w", now=NOW, limit=3, lease_until=NOW + 1)
            assert [job.id for job in claimed] == ["b", "a", "c"]

        async with opened(db_path) as repo:
            assert await repo.count_by_state() == {"STARTED": 3}
            assert [job.id for job in await repo.leased_jobs(expired_before=NOW + 2)] == ["b", "a", "c"]

    async def test_open_creates_the_parent_directory(self, tmp_path: Path) -> None:
        path = tmp_path / "a" / "b" / "tasks.db"

        async with opened(path) as repo:
            await repo.commit(Commit(jobs=[make_job("a")]))

        assert path.is_file()

    async def test_writes_queued_before_close_are_committed(self, db_path: Path) -> None:
        repo = SqliteJobRepository(db_path)
        await repo.open()
        try:
            writes = [asyncio.create_task(repo.commit(Commit(jobs=[make_job(f"j{i}")]))) for i in range(50)]
            await asyncio.sleep(0)
        finally:
            await repo.close()

        assert all(task.done() and task.exception() is None for task in writes)
        async with opened(db_path) as reopened:
            assert await reopened.count_by_state() == {"PENDING": 50}

    async def test_the_database_is_in_wal_mode_with_the_chosen_synchronous_level(self, db_path: Path) -> None:
        async with opened(db_path, synchronous="full"):
            with raw(db_path) as connection:
                assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)

        with pytest.raises(ValueError, match="synchronous"):
            SqliteJobRepository(db_path, synchronous="sometimes")

    async def test_rowids_stay_stable_across_upserts(self, db_path: Path) -> None:
        async with opened(db_path) as repo:
            await repo.commit(Commit(jobs=[make_job("a"), make_job("b")]))
            await repo.commit(Commit(jobs=[make_job("a", state=JobState.REVOKED), make_job("b", args=[1])]))
            with raw(db_path) as connection:
                assert connection.execute("SELECT id, seq FROM jobs ORDER BY seq").fetchall() == [("a", 1), ("b", 2)]


class TestMigrations:
    async def test_a_new_database_gets_the_current_schema_version(self, db_path: Path) -> None:
        async with opened(db_path):
            pass

        with raw(db_path) as connection:
            assert connection.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
            job_columns = [row[1] for row in connection.execute("PRAGMA table_info(jobs)")]
            workflow_columns = [row[1] for row in connection.execute("PRAGMA table_info(workflows)")]
        assert job_columns == ["seq", *Job.__struct_fields__]
        assert workflow_columns == list(Workflow.__struct_fields__)

    async def test_reopening_does_not_migrate_again(self, db_path: Path) -> None:
        async with opened(db_path) as repo:
            await repo.commit(Commit(jobs=[make_job("a")]))
        async with opened(db_path) as repo:
            assert await repo.get("a") == make_job("a")

        with raw(db_path) as connection:
            assert connection.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)

    async def test_a_version_1_database_is_upgraded_with_its_jobs_intact(self, db_path: Path) -> None:
        db_path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.closing(sqlite3.connect(db_path)) as old:
            old.executescript(MIGRATIONS[0])
            old.execute(
                "INSERT INTO jobs (id, task, args, kwargs, state, priority, due_at, created_at, attempts,"
                " max_retries, retry_on_worker_lost, workflow_id) VALUES"
                " ('old', 'tasks.add', '[1,2]', '{}', 'PENDING', 0, 1.0, 1.0, 0, 3, 1, NULL)"
            )
            old.execute("PRAGMA user_version = 1")
            old.commit()
        repo = SqliteJobRepository(db_path)
        await repo.open()
        try:
            job = await repo.get("old")
            assert job is not None and job.args == [1, 2] and job.root_id is None
            with contextlib.closing(sqlite3.connect(db_path)) as check:
                assert check.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        finally:
            await repo.close()

    async def test_a_newer_schema_version_is_refused(self, db_path: Path) -> None:
        async with opened(db_path):
            pass
        with raw(db_path) as connection:
            connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")

        with pytest.raises(SchemaTooNew) as caught:
            await SqliteJobRepository(db_path).open()

        assert isinstance(caught.value, StorageError)
        assert str(db_path) in str(caught.value)
        assert "\n" not in str(caught.value)
        with raw(db_path) as connection:  # untouched
            assert connection.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION + 1,)

    async def test_a_file_that_is_not_a_database_is_refused(self, garbage_db: Path) -> None:
        db_path = garbage_db

        for _ in range(2):  # the failed open released the lock: the second attempt fails the same way
            with pytest.raises(StorageError) as caught:
                await SqliteJobRepository(db_path).open()
            assert isinstance(caught.value, NotADatabase)
            assert str(db_path) in str(caught.value)
            assert "\n" not in str(caught.value)


class TestEngineLock:
    async def test_the_repository_says_it_is_exclusive(self, db_path: Path) -> None:
        assert SqliteJobRepository(db_path).exclusive is True

    async def test_a_second_open_of_the_same_file_is_refused_while_the_first_is_open(self, db_path: Path) -> None:
        async with opened(db_path) as first:
            second = SqliteJobRepository(db_path)
            with pytest.raises(StorageLocked) as caught:
                await second.open()
            assert "in use by another engine" in str(caught.value)
            assert f"{db_path}.lock" in str(caught.value)
            await first.commit(Commit(jobs=[make_job("still-works")]))

        async with opened(db_path) as third:
            assert await third.get("still-works") is not None

    async def test_a_lock_held_by_another_process_is_refused(self, db_path: Path) -> None:
        db_path.parent.mkdir(parents=True)
        holder = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            "import fcntl, sys; f = open(sys.argv[1], 'a'); fcntl.flock(f, fcntl.LOCK_EX); "
            "print('locked', flush=True); sys.stdin.read()",
            f"{db_path}.lock",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        assert holder.stdin is not None
        assert holder.stdout is not None
        try:
            assert await asyncio.wait_for(holder.stdout.readline(), 30) == b"locked\n"
            with pytest.raises(StorageLocked):
                await SqliteJobRepository(db_path).open()
        finally:
            holder.stdin.close()
            await asyncio.wait_for(holder.wait(), 30)

        async with opened(db_path):
            pass


class TestGroupCommit:
    async def test_concurrent_commits_share_transactions(self, db_path: Path) -> None:
        async with opened(db_path) as repo:
            before = repo.transactions

            await asyncio.gather(*(repo.commit(Commit(jobs=[make_job(f"j{i}")])) for i in range(200)))

            assert await repo.count_by_state() == {"PENDING": 200}
            assert repo.transactions - before < 200
            assert repo.transactions - before <= 5

    async def test_sequential_commits_each_take_a_transaction(self, db_path: Path) -> None:
        async with opened(db_path) as repo:
            before = repo.transactions
            for i in range(5):
                await repo.commit(Commit(jobs=[make_job(f"j{i}")]))

            assert repo.transactions - before == 5

    async def test_a_failing_write_fails_alone_and_the_rest_of_its_batch_commits(self, db_path: Path) -> None:
        broken = msgspec.structs.replace(make_job("broken"), task=None)  # NOT NULL violation

        async with opened(db_path) as repo:
            await repo.commit(Commit(jobs=[make_job("leased", state=JobState.STARTED, lease_owner="w2")]))
            outcomes = await asyncio.gather(
                repo.commit(Commit(jobs=[make_job("a")])),
                repo.commit(Commit(jobs=[make_job("b"), broken])),
                repo.commit(Commit(jobs=[make_job("lost")], guard=Guard(job_id="leased", owner="w1"))),
                return_exceptions=True,
            )

            assert outcomes[0] is None
            assert isinstance(outcomes[1], sqlite3.IntegrityError)
            assert isinstance(outcomes[2], Conflict)
            claimed = await repo.claim(owner="w1", now=NOW, limit=10, lease_until=NOW + 60)
            assert [job.id for job in claimed] == ["a"], "only what committed is queued"
            assert await repo.get("b") is None
            assert await repo.get("lost") is None
            assert await repo.count_by_state() == {"STARTED": 2}

    async def test_writes_after_close_are_refused(self, db_path: Path) -> None:
        repo = SqliteJobRepository(db_path)
        await repo.open()
        await repo.close()
        await repo.close()  # closing twice is harmless

        with pytest.raises(StorageClosed):
            await repo.commit(Commit(jobs=[make_job("a")]))
        with pytest.raises(StorageClosed):
            await repo.claim(owner="w", now=NOW, limit=1, lease_until=NOW)
        with pytest.raises(StorageClosed):
            repo.peek("a")

    async def test_a_closed_repository_can_be_opened_again(self, db_path: Path) -> None:
        repo = SqliteJobRepository(db_path)
        await repo.open()
        try:
            await repo.commit(Commit(jobs=[make_job("a")]))
        finally:
            await repo.close()
        await repo.open()
        try:
            assert await repo.get("a") == make_job("a")
        finally:
            await repo.close()


class TestCommitsFromOtherThreads:
    async def test_a_commit_waiting_for_the_write_lock_joins_the_holders_transaction(self, tmp_path: Path) -> None:
        async with opened(tmp_path / "jobs.db") as repo:
            outcome: list[bool] = []
            repo.writer._write_lock.acquire()  # the loop is in the middle of a write
            try:
                waiting = threading.Thread(
                    target=lambda: outcome.append(repo.commit_from_thread(Commit(jobs=[make_job("from-thread")])))
                )
                waiting.start()
                deadline = time.monotonic() + 5
                while not repo.writer._from_threads:  # the thread queued its commit and waits for the lock
                    assert time.monotonic() < deadline
                    await asyncio.sleep(0.001)
                before = repo.transactions
                # The loop's own write, still under the lock, takes the thread's commit along.
                assert repo.writer._write_batch_locked([]) == []
                assert repo.transactions == before + 1
            finally:
                repo.writer._write_lock.release()
            waiting.join(5)
            assert outcome == [True]
            assert repo.transactions == before + 1  # the thread found its commit done: no second transaction
            assert (await repo.get("from-thread")) == make_job("from-thread")
            claimed = await repo.claim(owner="me", now=NOW, limit=5, lease_until=NOW + 60)
            assert [job.id for job in claimed] == ["from-thread"]

    async def test_not_in_inline_mode_the_caller_goes_through_the_loop(self, tmp_path: Path) -> None:
        async with opened(tmp_path / "jobs.db", synchronous="FULL") as repo:
            stored = await asyncio.to_thread(repo.commit_from_thread, Commit(jobs=[make_job("x")]))
            assert stored is False
            assert await repo.get("x") is None


async def test_children_are_read_through_their_index(tmp_path: Path) -> None:
    repo = SqliteJobRepository(str(tmp_path / "children.db"))
    await repo.open()
    try:
        plan = repo.writer.read(
            "EXPLAIN QUERY PLAN SELECT id FROM jobs WHERE options IS NOT NULL"
            " AND json_extract(options, '$.parent_id') = ? ORDER BY seq",
            ("x",),
        )
        assert any("jobs_parent" in str(row) for row in plan), plan
    finally:
        await repo.close()
