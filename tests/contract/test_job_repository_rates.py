"""Rate limits on every repository (memory, SQLite, PostgreSQL): jobs of a task with Celery's ``rate_limit``
start at most once per interval (a token bucket of one, as Celery's), the others wait queued and their
next-due time is when the limit allows the next start. Time is the claim's ``now``: no waiting."""

from __future__ import annotations

from typing import Any

from application.ports import JobRepository
from domain.job import CallOptions, Job
from tests.contract.test_job_repository import NOW, make_job, put


def limited(job_id: str, task: str = "tasks.mail", rate: str | None = "1/m", **changes: Any) -> Job:
    return make_job(job_id, task=task, options=CallOptions(rate_limit=rate), **changes)


async def ids(repo: JobRepository, now: float = NOW, limit: int = 100) -> list[str]:
    return [job.id for job in await repo.claim(owner="w1", now=now, limit=limit, lease_until=now + 600)]


class TestRateLimits:
    async def test_one_start_per_interval_the_others_wait_queued(self, repo: JobRepository) -> None:
        await put(repo, *(limited(f"m{i}", created_at=NOW + i) for i in range(3)))
        assert await ids(repo) == ["m0"]
        assert await ids(repo) == []
        assert await repo.next_due_at() == NOW + 60, "the next start the limit allows"
        assert await ids(repo, now=NOW + 59.9) == []
        assert await ids(repo, now=NOW + 60) == ["m1"]
        assert await repo.next_due_at() == NOW + 120
        assert await ids(repo, now=NOW + 500) == ["m2"], "no burst after a quiet spell: a bucket of one"
        stored = await repo.get("m2")
        assert stored is not None and stored.options.rate_limit == "1/m" and stored.rate_interval == 60

    async def test_other_tasks_and_unlimited_jobs_are_not_held_up(self, repo: JobRepository) -> None:
        await put(
            repo,
            limited("m0"),
            limited("m1"),
            limited("s0", task="tasks.sms", rate="2/s"),
            limited("s1", task="tasks.sms", rate="2/s"),
            limited("free", task="tasks.mail", rate=None),
        )
        assert await ids(repo) == ["m0", "s0", "free"]
        assert await repo.next_due_at() == NOW + 0.5
        assert await ids(repo, now=NOW + 0.5) == ["s1"]

    async def test_a_job_due_later_than_the_limit_waits_for_its_own_time(self, repo: JobRepository) -> None:
        await put(repo, limited("m0"), limited("m1", due_at=NOW + 300))
        assert await ids(repo) == ["m0"]
        assert await repo.next_due_at() == NOW + 300
        assert await ids(repo, now=NOW + 300) == ["m1"]

    async def test_a_number_alone_is_per_second(self, repo: JobRepository) -> None:
        await put(repo, limited("a", rate="4"), limited("b", rate="4"))
        assert await ids(repo) == ["a"]
        assert await repo.next_due_at() == NOW + 0.25
