"""The PostgreSQL migration that gives jobs their named queue as a column: jobs stored before it (their
queue only in their options) are claimed from their queue afterwards."""

from __future__ import annotations

from collections.abc import Iterator

import asyncpg
import pytest

from adapters.postgres import PostgresJobRepository
from adapters.postgres.schema import MIGRATIONS
from tests.support.postgres import create_database, drop_database

QUEUE_MIGRATION = next(index for index, sql in enumerate(MIGRATIONS) if "ADD COLUMN queue" in sql)


@pytest.fixture
def fresh_url() -> Iterator[str]:
    url = create_database()
    try:
        yield url
    finally:
        drop_database(url)


async def test_jobs_stored_before_the_migration_keep_their_queue(fresh_url: str) -> None:
    connection = await asyncpg.connect(fresh_url)
    try:
        await connection.execute(
            "CREATE TABLE geekblog_schema (version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now(),"
            " applied_by INTEGER NOT NULL DEFAULT pg_backend_pid())"
        )
        for number in range(QUEUE_MIGRATION):
            await connection.execute(MIGRATIONS[number])
            await connection.execute("INSERT INTO geekblog_schema (version) VALUES ($1)", number + 1)
        for job_id, options in [("q", '{"queue":"ai"}'), ("rk", '{"routing_key":"reports"}'), ("none", None)]:
            await connection.execute(
                "INSERT INTO jobs (id, task, args, kwargs, state, priority, due_at, created_at, attempts,"
                " retry_on_worker_lost, options) VALUES ($1, 't', '[]', '{}', 'PENDING', 0, 1.0, 1.0, 0, true, $2)",
                job_id,
                options,
            )
    finally:
        await connection.close()
    repo = PostgresJobRepository(fresh_url)
    await repo.open()
    try:
        assert await repo.queue_depths() == {"ai": 1, "reports": 1, "default": 1}
        claimed = await repo.claim(owner="w", now=1.0, limit=5, lease_until=60.0, queues={"reports": 5})
        assert [job.id for job in claimed] == ["rk"]
    finally:
        await repo.close()
