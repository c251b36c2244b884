"""Idempotency keys on PostgreSQL shared by several engines: two processes' writers (two connections, two
transactions) storing the same keys at the same time store exactly one commit per key."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from adapters.postgres import PostgresJobRepository
from application.ports import Commit, IdempotencyKey
from domain.errors import IdempotencyKeyTaken
from domain.job import Job
from tests.support.postgres import empty_tables


@pytest.fixture
async def two_writers(postgres_url: str) -> AsyncIterator[tuple[PostgresJobRepository, PostgresJobRepository]]:
    """Two repositories on one database, as two engine processes have: each its own writing connection."""
    await empty_tables(postgres_url)
    first, second = PostgresJobRepository(postgres_url), PostgresJobRepository(postgres_url)
    await first.open()
    try:
        await second.open()
        try:
            yield first, second
        finally:
            await second.close()
    finally:
        await first.close()


def keyed(job_id: str, key: str) -> Commit:
    job = Job(id=job_id, task="t", due_at=0.0, created_at=0.0)
    return Commit(
        jobs=[job], idempotency=IdempotencyKey(key=key, fingerprint="f", kind="job", target=job_id, created_at=0.0)
    )


async def test_two_engines_racing_on_each_key_store_one_job_per_key(
    two_writers: tuple[PostgresJobRepository, PostgresJobRepository],
) -> None:
    first, second = two_writers
    keys = [f"key-{i}" for i in range(40)]
    outcomes = await asyncio.gather(
        *(
            repo.commit(keyed(f"{name}-{key}", key))
            for key in keys
            for name, repo in (("first", first), ("second", second))
        ),
        return_exceptions=True,
    )
    refused = [outcome for outcome in outcomes if outcome is not None]
    assert len(refused) == len(keys) and all(isinstance(outcome, IdempotencyKeyTaken) for outcome in refused)
    for key in keys:
        held = await first.idempotency_key(key)
        assert held is not None
        stored = await first.get_many([f"first-{key}", f"second-{key}"])
        assert list(stored) == [held.target], key  # the job of the commit that stored the key, and only it
