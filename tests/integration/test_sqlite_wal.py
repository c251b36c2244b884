"""The write-ahead log stays bounded: a backlog of jobs costs its rows, not an ever-growing WAL file."""

from __future__ import annotations

import time
from pathlib import Path

from adapters.sqlite_job_repository import SqliteJobRepository
from application.ports import Commit
from domain.job import Job


def sizes_mb(path: Path) -> tuple[float, float]:
    wal = Path(f"{path}-wal")
    return path.stat().st_size / 2**20, (wal.stat().st_size if wal.exists() else 0) / 2**20


class TestWalSize:
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
