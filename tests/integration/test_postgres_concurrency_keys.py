"""Concurrency keys and rate limits across engines on one PostgreSQL database: repositories on their own
connection pools claim at the same time, and no key ever has more STARTED jobs than its limit (each claim
checks its keys under their advisory locks, and puts back what the others took first), and a rate-limited
task starts one job per interval in all (each claim takes its start in ``rate_limits`` under the row lock)."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator

import asyncpg
import pytest

from adapters.postgres import PostgresJobRepository
from adapters.postgres.statements import check_controls, claim_alone
from application.ports import Commit
from domain.job import CallOptions, Job
from domain.states import JobState
from tests.support.postgres import empty_tables

NOW = 1_000.0
LIMITS = {"project:1": 1, "project:2": 1, "project:3": 2, "project:4": 3}


@pytest.fixture
async def repos(postgres_url: str) -> AsyncIterator[list[PostgresJobRepository]]:
    await empty_tables(postgres_url)
    opened = [PostgresJobRepository(postgres_url) for _ in range(3)]
    for repo in opened:
        await repo.open()
    try:
        yield opened
    finally:
        for repo in opened:
            await repo.close()


def keyed_jobs(round_number: int) -> list[Job]:
    jobs: list[Job] = []
    counter = itertools.count()
    for _ in range(6):
        for key, limit in LIMITS.items():
            options = CallOptions(concurrency_key=key, concurrency_limit=limit)
            job_id = f"r{round_number}-{next(counter)}"
            jobs.append(Job(id=job_id, task="t", due_at=NOW, created_at=NOW, options=options))
    return jobs


async def started_per_key(url: str) -> dict[str, int]:
    connection = await asyncpg.connect(url)
    try:
        rows = await connection.fetch(
            "SELECT concurrency_key, count(*) FROM jobs WHERE state = 'STARTED' GROUP BY concurrency_key"
        )
    finally:
        await connection.close()
    return {row[0]: row[1] for row in rows}


async def claims(repo: PostgresJobRepository, owner: str) -> list[Job]:
    found: list[Job] = []
    for _ in range(4):
        found += await repo.claim(owner=owner, now=NOW, limit=3, lease_until=NOW + 60)
    return found


async def test_claims_from_several_engines_at_once_never_pass_a_keys_limit(
    repos: list[PostgresJobRepository], postgres_url: str
) -> None:
    for round_number in range(5):
        jobs = keyed_jobs(round_number)
        await repos[0].commit(Commit(jobs=jobs))
        results = await asyncio.gather(
            *(claims(repo, f"engine-{index}-{lane}") for index, repo in enumerate(repos) for lane in range(3))
        )
        per_key: dict[str, int] = {}
        for job in (job for found in results for job in found):
            assert job.concurrency is not None
            per_key[job.concurrency[0]] = per_key.get(job.concurrency[0], 0) + 1
        assert per_key == LIMITS, f"round {round_number}: claimed {per_key}, limits {LIMITS}"
        assert await started_per_key(postgres_url) == LIMITS
        stored = await repos[1].get_many([job.id for job in jobs])
        waiting = [job for job in stored.values() if job.state == JobState.PENDING]
        assert len(waiting) == len(jobs) - sum(LIMITS.values())
        assert all(job.attempts == 0 and job.lease_owner is None for job in waiting), "put back as they were"
        await empty_tables(postgres_url)


async def test_a_rate_limit_holds_across_engines_claiming_at_once(
    repos: list[PostgresJobRepository], postgres_url: str
) -> None:
    options = CallOptions(rate_limit="1/m")
    jobs = [Job(id=f"mail-{i}", task="mail", due_at=NOW, created_at=NOW, options=options) for i in range(30)]
    await repos[0].commit(Commit(jobs=jobs))
    for minute in range(3):
        now = NOW + 60 * minute
        results = await asyncio.gather(
            *(
                repo.claim(owner=f"engine-{index}-{lane}", now=now, limit=3, lease_until=now + 600)
                for index, repo in enumerate(repos)
                for lane in range(3)
            )
        )
        assert sum(len(found) for found in results) == 1, f"minute {minute}: one start per minute, on every engine"
        assert await repos[1].next_due_at() == now + 60
    assert await started_per_key(postgres_url) == {None: 3}


async def test_two_claims_checked_after_both_committed_start_the_first_submitted(postgres_url: str) -> None:
    """Engine B took the key's second job while engine A held the first's row, and both claims committed
    before either checked the key: whichever checks first, the first submitted job gets the key and the
    second goes back to the queue (before, the first to check counted the other's claim as a holder and put
    its own job back, so the later job ran first; both checks counting each other would stall the key)."""
    for b_checks_first in (True, False):
        await empty_tables(postgres_url)
        options = CallOptions(concurrency_key="project:9")
        first, second = (Job(id=name, task="t", due_at=NOW, created_at=NOW, options=options) for name in ("k0", "k1"))
        connections = [await asyncpg.connect(postgres_url) for _ in range(2)]
        try:
            setup = PostgresJobRepository(postgres_url)
            await setup.open()
            try:
                await setup.commit(Commit(jobs=[first]))
                await setup.commit(Commit(jobs=[second]))
            finally:
                await setup.close()
            a, b = connections
            claim_a = a.transaction()
            await claim_a.start()
            took_a = await claim_alone(a, (NOW, "engine-a", NOW + 60, 1))
            took_b = await claim_alone(b, (NOW, "engine-b", NOW + 60, 2))  # skips k0's locked row, takes k1
            await claim_a.commit()
            assert [item.job.id for item in took_a] == ["k0"] and [item.job.id for item in took_b] == ["k1"]
            order = [(b, "engine-b", took_b), (a, "engine-a", took_a)]
            if not b_checks_first:
                order.reverse()
            put_back: dict[str, list[str]] = {}
            for connection, owner, took in order:
                async with connection.transaction():
                    put_back[owner] = await check_controls(connection, (owner, NOW, took))
            assert put_back == {"engine-a": [], "engine-b": ["k1"]}, f"b checks first: {b_checks_first}"
            rows = {row[0]: row[1] for row in await a.fetch("SELECT id, state FROM jobs")}
            assert rows == {"k0": "STARTED", "k1": "PENDING"}
        finally:
            for connection in connections:
                await connection.close()
