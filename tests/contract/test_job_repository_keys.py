"""Concurrency keys on every repository (memory, SQLite, PostgreSQL): at most ``limit`` STARTED jobs with a
key; a claim passes over the jobs of a full key (they wait, unseen by next-due reads) and takes them once a
holder lets the key go."""

from __future__ import annotations

from typing import Any

from application.ports import Commit, JobRepository
from domain.job import CallOptions, ErrorInfo, Job
from domain.states import JobState
from tests.contract.test_job_repository import NOW, make_job, put


def keyed(job_id: str, key: str | None, limit: int | None = None, **changes: Any) -> Job:
    return make_job(job_id, options=CallOptions(concurrency_key=key, concurrency_limit=limit), **changes)


async def claim(repo: JobRepository, *, limit: int = 100, now: float = NOW, owner: str = "w1") -> list[Job]:
    return await repo.claim(owner=owner, now=now, limit=limit, lease_until=now + 60)


async def ids(repo: JobRepository, **kwargs: Any) -> list[str]:
    return [job.id for job in await claim(repo, **kwargs)]


class TestConcurrencyKeys:
    async def test_the_key_and_limit_survive_storage(self, repo: JobRepository) -> None:
        await put(repo, keyed("a", "project:42"), keyed("b", "k", 3), keyed("c", None))
        stored = await repo.get_many(["a", "b", "c"])
        assert [stored[job_id].concurrency for job_id in "abc"] == [("project:42", 1), ("k", 3), None]

    async def test_one_at_a_time_the_others_wait_in_order(self, repo: JobRepository) -> None:
        await put(repo, *(keyed(f"k{i}", "project:1", created_at=NOW + i) for i in range(3)))
        (first,) = await claim(repo)
        assert first.id == "k0"
        assert await ids(repo) == []
        assert await repo.next_due_at() is None, "a job waiting on a full key is not due work"
        await put(repo, first.succeeded(1, now=NOW))
        assert await repo.next_due_at() == NOW
        assert await ids(repo) == ["k1"]

    async def test_up_to_the_limit_counting_those_of_the_same_claim(self, repo: JobRepository) -> None:
        await put(repo, *(keyed(f"k{i}", "k", 2, created_at=NOW + i) for i in range(4)))
        assert await ids(repo, limit=3) == ["k0", "k1"]
        assert await ids(repo) == []

    async def test_other_jobs_behind_a_full_key_are_not_held_up(self, repo: JobRepository) -> None:
        busy = keyed("busy", "k")
        await put(repo, busy, keyed("waits", "k", priority=5), keyed("free", None), keyed("other", "j"))
        await put(repo, busy.started(owner="w0", now=NOW, lease_until=NOW + 60))
        assert await ids(repo) == ["free", "other"]
        stored = await repo.get_many(["waits", "free", "other"])
        assert stored["waits"].state == JobState.PENDING
        assert stored["free"].state == stored["other"].state == JobState.STARTED

    async def test_a_job_waiting_on_a_replacement_workflow_keeps_holding_it(self, repo: JobRepository) -> None:
        await put(repo, keyed("parent", "k"), keyed("next", "k", created_at=NOW + 1))
        (parent,) = await claim(repo)
        await put(repo, parent.waiting_for("wf-1"))
        assert await ids(repo) == []
        await put(repo, parent.waiting_for("wf-1").succeeded(None, now=NOW))
        assert await ids(repo) == ["next"]

    async def test_a_retry_lets_the_key_go_while_it_waits(self, repo: JobRepository) -> None:
        await put(repo, keyed("a", "k"), keyed("b", "k", created_at=NOW + 1))
        (a,) = await claim(repo)
        error = ErrorInfo(type="E", message="again")
        await put(repo, a.retrying(error, due_at=NOW + 30))
        assert await ids(repo) == ["b"]
        assert await ids(repo, now=NOW + 30) == [], "b holds the key now"

    async def test_a_holder_lost_to_a_revocation_or_failure_lets_it_go(self, repo: JobRepository) -> None:
        await put(repo, keyed("a", "k"), keyed("b", "k", created_at=NOW + 1), keyed("c", "k", created_at=NOW + 2))
        (a,) = await claim(repo)
        await repo.commit(Commit(jobs=[a.failed(ErrorInfo(type="E", message="x"), now=NOW)]))
        (b,) = await claim(repo)
        assert b.id == "b"
        await put(repo, b.failed(ErrorInfo(type="R", message="revoked"), now=NOW, state=JobState.REVOKED))
        assert await ids(repo) == ["c"]
