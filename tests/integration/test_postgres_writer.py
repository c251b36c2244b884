"""The PostgreSQL writer's two ways of running writes: a lone operation (or a pair) as single statements in
their own implicit transactions, more at once in one transaction. Both must give the answers the contract
suite asks of every repository; these tests pin which way each case goes, and what the lone way adds (its
own guard check, its retry when the server ended the session)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
import msgspec
import pytest

from adapters.postgres import PostgresJobRepository
from application.ports import Commit, Guard
from domain.errors import Conflict, NotStorable
from domain.job import ErrorInfo, Job
from domain.states import JobState
from tests.support.postgres import empty_tables, url_of

NOW = 1_000.0
QUEUED = frozenset({JobState.PENDING, JobState.RETRY})


def job(job_id: str, **changes: Any) -> Job:
    fields: dict[str, Any] = {"task": "t", "due_at": NOW, "created_at": NOW}
    fields.update(changes)
    return Job(id=job_id, **fields)


def done(leased: Job) -> Job:
    return leased.succeeded(leased.args, now=NOW + 1)


@pytest.fixture
async def repo(postgres_url: str) -> AsyncIterator[PostgresJobRepository]:
    await empty_tables(postgres_url)
    repository = PostgresJobRepository(postgres_url)
    await repository.open()
    try:
        yield repository
    finally:
        await repository.close()


@pytest.fixture
def begins(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The ``BEGIN`` statements sent from now on (the writer's explicit transactions)."""
    sent: list[str] = []
    original: Callable[..., Awaitable[str]] = asyncpg.connection.Connection.execute

    async def execute(self: asyncpg.Connection, query: str, *args: Any, **kwargs: Any) -> str:
        if query.strip().upper().startswith("BEGIN"):
            sent.append(query)
        return await original(self, query, *args, **kwargs)

    monkeypatch.setattr(asyncpg.connection.Connection, "execute", execute)
    return sent


async def leased(repo: PostgresJobRepository, job_id: str, owner: str) -> Job:
    started = job(job_id, args=[job_id]).started(owner=owner, now=NOW, lease_until=NOW + 60)
    await repo.commit(Commit(jobs=[started]))
    return started


class TestLoneOperations:
    async def test_a_submission_a_claim_and_an_outcome_alone_open_no_transaction(
        self, repo: PostgresJobRepository, begins: list[str]
    ) -> None:
        await repo.commit(Commit(jobs=[job("a")]))
        (claimed,) = await repo.claim(owner="w1", now=NOW, limit=1, lease_until=NOW + 60)
        await repo.commit(Commit(jobs=[done(claimed)], guard=Guard(job_id="a", owner="w1")))

        assert begins == []
        stored = await repo.get("a")
        assert stored is not None and stored.state == JobState.SUCCESS and stored.lease_owner is None

    async def test_three_at_once_share_one_transaction(self, repo: PostgresJobRepository, begins: list[str]) -> None:
        await asyncio.gather(*(repo.commit(Commit(jobs=[job(f"j{i}")])) for i in range(3)))

        assert len(begins) == 1
        assert len(await repo.get_many(["j0", "j1", "j2"])) == 3

    @pytest.mark.parametrize(
        ("guard", "reason"),
        [
            (Guard(job_id="a", owner="w1"), "job a is no longer leased to w1"),
            (Guard(job_id="a", states=QUEUED), "job a is STARTED"),
            (Guard(job_id="missing"), "job missing does not exist"),
        ],
        ids=["owner", "states", "missing"],
    )
    async def test_a_lone_guarded_outcome_refused_says_why_and_writes_nothing(
        self, repo: PostgresJobRepository, guard: Guard, reason: str
    ) -> None:
        mine = await leased(repo, "a", "w2")
        changed = done(msgspec.structs.replace(mine, id=guard.job_id))

        with pytest.raises(Conflict, match=f"^{reason}$"):
            await repo.commit(Commit(jobs=[changed], guard=guard))

        assert await repo.get("a") == mine
        assert await repo.get("missing") is None

    async def test_a_lone_guarded_outcome_that_holds_is_stored_whole(self, repo: PostgresJobRepository) -> None:
        mine = await leased(repo, "a", "w1")
        finished = done(mine)

        guard = Guard(job_id="a", owner="w1", states=frozenset({JobState.STARTED}))
        await repo.commit(Commit(jobs=[finished], guard=guard))

        assert await repo.get("a") == finished

    async def test_a_pair_runs_in_order_and_fails_apart(self, repo: PostgresJobRepository) -> None:
        queued = job("a")
        await repo.commit(Commit(jobs=[queued]))
        revoked = queued.failed(ErrorInfo(type="Revoked", message=""), now=NOW, state=JobState.REVOKED)

        claimed, outcome = await asyncio.gather(
            repo.claim(owner="w1", now=NOW, limit=1, lease_until=NOW + 60),
            repo.commit(Commit(jobs=[revoked], guard=Guard(job_id="a", states=QUEUED))),
            return_exceptions=True,
        )
        assert isinstance(claimed, list) and [j.id for j in claimed] == ["a"]
        assert isinstance(outcome, Conflict)

        bad, good = await asyncio.gather(
            repo.commit(Commit(jobs=[job("bad", task="t\x00")])),
            repo.commit(Commit(jobs=[job("good")])),
            return_exceptions=True,
        )
        assert isinstance(bad, NotStorable) and good is None
        assert set(await repo.get_many(["bad", "good"])) == {"good"}

    async def test_lone_statements_run_again_after_the_server_ended_the_session(
        self, repo: PostgresJobRepository, postgres_url: str
    ) -> None:
        await repo.commit(Commit(jobs=[job("a"), job("b")]))
        for step in range(3):
            assert await _end_sessions_of(postgres_url) >= 1
            if step == 0:
                claimed = await repo.claim(owner="w1", now=NOW, limit=2, lease_until=NOW + 60)
            elif step == 1:
                await repo.commit(Commit(jobs=[done(claimed[0])], guard=Guard(job_id=claimed[0].id, owner="w1")))
            else:
                await repo.renew_leases("w1", [claimed[1].id], NOW + 600)

        assert sorted(j.id for j in claimed) == ["a", "b"]
        first, second = await repo.get(claimed[0].id), await repo.get(claimed[1].id)
        assert first is not None and first.state == JobState.SUCCESS
        assert second is not None and second.lease_expires_at == NOW + 600


async def _end_sessions_of(url: str) -> int:
    admin = await asyncpg.connect(url_of("postgres"))
    try:
        ended: int = await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = $1", url.rsplit("/", 1)[1]
        )
    finally:
        await admin.close()
    return ended
