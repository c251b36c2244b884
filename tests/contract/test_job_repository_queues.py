"""Named queues on every repository (memory, SQLite, PostgreSQL): a job keeps its queue, a claim takes only
from the queues it is given, at most each queue's room, in the usual order across them."""

from __future__ import annotations

from typing import Any

from application.ports import JobFilter, JobRepository
from domain.job import CallOptions, Job
from domain.states import JobState
from tests.contract.test_job_repository import NOW, make_job, put


def in_queue(job_id: str, queue: str | None = None, routing_key: str | None = None, **changes: Any) -> Job:
    return make_job(job_id, options=CallOptions(queue=queue, routing_key=routing_key), **changes)


async def claim(repo: JobRepository, queues: dict[str, int] | None, *, limit: int = 100, now: float = NOW) -> list[str]:
    claimed = await repo.claim(owner="w1", now=now, limit=limit, lease_until=now + 60, queues=queues)
    return [job.id for job in claimed]


class TestQueueOfAJob:
    async def test_queue_else_routing_key_else_default_survives_storage(self, repo: JobRepository) -> None:
        await put(repo, in_queue("q", "ai", "ignored"), in_queue("rk", None, "reports"), in_queue("none"))
        stored = await repo.get_many(["q", "rk", "none"])
        assert {job_id: job.queue for job_id, job in stored.items()} == {"q": "ai", "rk": "reports", "none": "default"}

    async def test_depths_count_queued_jobs_per_queue_only(self, repo: JobRepository) -> None:
        await put(
            repo, in_queue("a1", "ai"), in_queue("a2", "ai"), in_queue("d1"), in_queue("later", "ai", due_at=NOW + 5)
        )
        assert await repo.queue_depths() == {"ai": 3, "default": 1}
        await claim(repo, {"ai": 1})
        assert await repo.queue_depths() == {"ai": 2, "default": 1}

    async def test_a_job_moved_to_another_queue_is_claimed_from_that_one(self, repo: JobRepository) -> None:
        job = in_queue("j", "ai")
        await put(repo, job)
        await put(repo, in_queue("j", "reports"))
        assert await claim(repo, {"ai": 5}) == []
        assert await claim(repo, {"reports": 5}) == ["j"]


class TestClaimByQueue:
    async def test_only_the_queues_given(self, repo: JobRepository) -> None:
        await put(repo, in_queue("d"), in_queue("a", "ai"), in_queue("o", "other"))
        assert await claim(repo, {"ai": 5, "default": 5}) == ["d", "a"]
        assert await repo.next_due_at(["ai", "default"]) is None
        assert await repo.next_due_at(["other"]) == NOW
        assert await claim(repo, None) == ["o"]

    async def test_at_most_each_queues_room_in_claim_order_across_queues(self, repo: JobRepository) -> None:
        await put(
            repo,
            in_queue("a1", "ai"),
            in_queue("d1"),
            in_queue("a2", "ai", priority=5),
            in_queue("d2"),
            in_queue("a3", "ai"),
            in_queue("d3", priority=9),
        )
        assert await claim(repo, {"ai": 2, "default": 10}, limit=4) == ["d3", "a2", "a1", "d1"]
        assert await claim(repo, {"ai": 0, "default": 10}) == ["d2"]
        assert await claim(repo, {"ai": 1}) == ["a3"]

    async def test_jobs_not_taken_past_the_limit_stay_queued(self, repo: JobRepository) -> None:
        await put(repo, *(in_queue(f"a{i}", "ai", created_at=NOW + i) for i in range(3)), in_queue("d"))
        assert await claim(repo, {"ai": 3, "default": 3}, limit=2) == ["a0", "a1"]
        assert await claim(repo, {"ai": 3, "default": 3}) == ["a2", "d"]

    async def test_next_due_of_the_queues_given(self, repo: JobRepository) -> None:
        await put(repo, in_queue("a", "ai", due_at=NOW + 5), in_queue("d", due_at=NOW + 9))
        assert await repo.next_due_at(["default"]) == NOW + 9
        assert await repo.next_due_at(["ai", "default"]) == NOW + 5
        assert await repo.next_due_at() == NOW + 5
        assert await repo.next_due_at(["nothing"]) is None
        assert await claim(repo, {"ai": 1}, now=NOW + 5) == ["a"]


class TestListByQueue:
    async def test_lists_the_jobs_of_one_queue_whatever_their_state(self, repo: JobRepository) -> None:
        await put(
            repo,
            in_queue("q", "ai"),
            in_queue("rk", None, "ai"),
            in_queue("both", "reports", "ai"),
            in_queue("none"),
            in_queue("done", "ai", state=JobState.SUCCESS),
        )

        async def ids(**filters: Any) -> list[str]:
            return [job.id for job in (await repo.list_jobs(JobFilter(**filters), limit=10)).items]

        assert await ids(queue="ai") == ["done", "rk", "q"]
        assert await ids(queue="reports") == ["both"]
        assert await ids(queue="default") == ["none"]
        assert await ids(queue="ai", state=JobState.SUCCESS) == ["done"]
        assert await ids(queue="nowhere") == []
        page = await repo.list_jobs(JobFilter(queue="ai"), limit=2)
        assert [job.id for job in page.items] == ["done", "rk"] and page.next_cursor is not None
        rest = await repo.list_jobs(JobFilter(queue="ai"), limit=2, cursor=page.next_cursor)
        assert [job.id for job in rest.items] == ["q"]
