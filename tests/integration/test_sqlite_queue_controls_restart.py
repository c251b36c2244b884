"""Queue controls survive a restart of the SQLite engine's storage: the in-memory index it claims from is
rebuilt from the file with each queued job's named queue, concurrency key and rate limit, and the keys
its STARTED jobs hold."""

from __future__ import annotations

from pathlib import Path

from adapters.sqlite import SqliteJobRepository
from application.ports import Commit
from domain.job import CallOptions, Job

NOW = 1_000.0


def job(job_id: str, **options: object) -> Job:
    return Job(id=job_id, task="t", due_at=NOW, created_at=NOW, options=CallOptions(**options))  # type: ignore[arg-type]


async def claim(repo: SqliteJobRepository, queues: dict[str, int] | None = None, now: float = NOW) -> list[str]:
    return [j.id for j in await repo.claim(owner="w", now=now, limit=10, lease_until=now + 60, queues=queues)]


async def test_queues_keys_and_holders_are_read_back_from_the_file(tmp_path: Path) -> None:
    path = tmp_path / "tasks.db"
    repo = SqliteJobRepository(path)
    await repo.open()
    holder = job("holder", concurrency_key="project:1").started(owner="w0", now=NOW, lease_until=NOW + 60)
    await repo.commit(
        Commit(
            jobs=[
                holder,
                job("waiter", concurrency_key="project:1"),
                job("ai", queue="ai"),
                job("routed", routing_key="reports"),
                job("limited", rate_limit="1/m"),
            ]
        )
    )
    await repo.close()

    repo = SqliteJobRepository(path)
    await repo.open()
    try:
        assert await repo.queue_depths() == {"default": 2, "ai": 1, "reports": 1}
        assert await claim(repo, {"reports": 5}) == ["routed"]
        assert await claim(repo, {"default": 5}) == ["limited"], "the waiter's key is held by a STARTED job"
        await repo.commit(Commit(jobs=[holder.succeeded(None, now=NOW)]))
        assert await claim(repo, {"default": 5, "ai": 5}) == ["waiter", "ai"]
    finally:
        await repo.close()
