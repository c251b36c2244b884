"""The write-ahead log stays bounded: a backlog of jobs costs its rows, not an ever-growing WAL file."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from adapters.sqlite import SqliteJobRepository
from application.ports import Commit, JobFilter
from domain.job import Job


def sizes_mb(path: Path) -> tuple[float, float]:
    wal = Path(f"{path}-wal")
    return path.stat().st_size / 2**20, (wal.stat().st_size if wal.exists() else 0) / 2**20


class TestWalSize:
    @pytest.mark.serial  # how far checkpoints keep up depends on the CPU left: make test runs it alone
    async def test_back_to_back_commits_keep_the_wal_bounded(self, tmp_path: Path) -> None:
        path = tmp_path / "wal.db"
        repo = SqliteJobRepository(path)
        await repo.open()
        try:
            now = time.time()
            for index in range(5_000):
                job = Job(id=f"job-{index:08d}", task="t", args=[index], due_at=now, created_at=now)
                await repo.commit(Commit(jobs=[job]))
            database_mb, wal_mb = sizes_mb(path)
        finally:
            await repo.close()
        assert wal_mb < 40, f"the WAL grew to {wal_mb:.1f} MB for 5,000 jobs ({database_mb:.1f} MB of rows)"

    async def test_after_a_burst_the_wal_is_reset_while_the_database_stays_open(self, tmp_path: Path) -> None:
        path = tmp_path / "idle.db"
        repo = SqliteJobRepository(path)
        await repo.open()
        try:
            now = time.time()

            def from_a_thread() -> None:
                for index in range(150):  # also commits made on another thread than the loop
                    job = Job(id=f"thread-{index}", task="t", args=[index], due_at=now, created_at=now)
                    assert repo.commit_from_thread(Commit(jobs=[job]))

            await asyncio.to_thread(from_a_thread)
            for index in range(50):
                await repo.commit(Commit(jobs=[Job(id=f"loop-{index}", task="t", due_at=now, created_at=now)]))
            assert sizes_mb(path)[1] > 0
            deadline = time.monotonic() + 5
            while sizes_mb(path)[1] > 0:
                assert time.monotonic() < deadline, f"the WAL stayed at {sizes_mb(path)[1]:.2f} MB after the burst"
                await asyncio.sleep(0.05)
            assert len((await repo.list_jobs(JobFilter(), limit=500)).items) == 200
        finally:
            await repo.close()
