"""The idempotency-key contract, on every JobRepository adapter: a key is stored in the commit that stores
what it created, or not at all; a commit carrying a key stored already is refused whole; a key is kept as
long as its job or workflow is, and is free again once that is forgotten or purged."""

from __future__ import annotations

import asyncio
from typing import Any, Literal

import pytest

from application.ports import Commit, Guard, IdempotencyKey, JobRepository
from domain.canvas import Signature
from domain.errors import Conflict, IdempotencyKeyTaken
from domain.job import CallOptions, Job
from domain.states import JobState
from domain.workflow import Workflow


def job(job_id: str, state: JobState = JobState.PENDING, **changes: Any) -> Job:
    return Job(id=job_id, task="t", due_at=0.0, created_at=0.0, state=state, **changes)


def key(name: str, target: str, *, kind: Literal["job", "workflow"] = "job", fingerprint: str = "f1") -> IdempotencyKey:
    return IdempotencyKey(key=name, fingerprint=fingerprint, kind=kind, target=target, created_at=5.0)


class TestStoring:
    async def test_a_key_is_stored_with_its_job_and_read_back_whole(self, repo: JobRepository) -> None:
        held = key("k-1", "a")
        await repo.commit(Commit(jobs=[job("a", options=CallOptions(idempotency_key="k-1"))], idempotency=held))
        assert await repo.idempotency_key("k-1") == held
        stored = await repo.get("a")
        assert stored is not None and stored.options.idempotency_key == "k-1"  # shown with the job
        assert await repo.idempotency_key("k-2") is None

    async def test_a_key_stored_already_refuses_the_whole_commit(self, repo: JobRepository) -> None:
        await repo.commit(Commit(jobs=[job("a")], idempotency=key("k", "a")))
        with pytest.raises(IdempotencyKeyTaken, match="'k'"):
            await repo.commit(Commit(jobs=[job("b")], idempotency=key("k", "b", fingerprint="f2")))
        assert await repo.get("b") is None
        assert await repo.idempotency_key("k") == key("k", "a")

    async def test_a_commit_refused_by_its_guard_stores_no_key(self, repo: JobRepository) -> None:
        await repo.commit(Commit(jobs=[job("a", JobState.SUCCESS)]))
        guard = Guard(job_id="a", states=frozenset({JobState.PENDING}))
        with pytest.raises(Conflict):
            await repo.commit(
                Commit(jobs=[job("a", JobState.REVOKED), job("b")], guard=guard, idempotency=key("k", "b"))
            )
        assert await repo.idempotency_key("k") is None and await repo.get("b") is None

    async def test_a_workflow_keeps_its_key(self, repo: JobRepository) -> None:
        workflow = Workflow(id="w", canvas=Signature(task="t"), created_at=0.0)
        held = key("wk", "w", kind="workflow")
        await repo.commit(Commit(workflows=[workflow], jobs=[job("w-0", workflow_id="w")], idempotency=held))
        assert await repo.idempotency_key("wk") == held

    async def test_of_commits_racing_with_one_key_exactly_one_is_stored(self, repo: JobRepository) -> None:
        # Queued together, they meet in one transaction of the writer (a batch): the later ones are refused.
        outcomes = await asyncio.gather(
            *(repo.commit(Commit(jobs=[job(f"j{i}")], idempotency=key("same", f"j{i}"))) for i in range(6)),
            repo.commit(Commit(jobs=[job("other")])),
            return_exceptions=True,
        )
        stored = [i for i, outcome in enumerate(outcomes[:6]) if outcome is None]
        assert len(stored) == 1
        assert all(
            isinstance(outcome, IdempotencyKeyTaken) for i, outcome in enumerate(outcomes[:6]) if i not in stored
        )
        assert outcomes[6] is None  # a commit beside them is not disturbed
        winner = f"j{stored[0]}"
        assert (await repo.idempotency_key("same")) == key("same", winner)
        assert set(await repo.get_many([f"j{i}" for i in range(6)])) == {winner}


class TestRetention:
    async def test_forgetting_the_job_frees_its_key(self, repo: JobRepository) -> None:
        await repo.commit(Commit(jobs=[job("a", JobState.SUCCESS, finished_at=1.0)], idempotency=key("k", "a")))
        assert await repo.forget("a")
        assert await repo.idempotency_key("k") is None
        await repo.commit(Commit(jobs=[job("b")], idempotency=key("k", "b")))  # free again
        assert await repo.idempotency_key("k") == key("k", "b")

    async def test_purge_frees_the_keys_of_what_it_deletes_and_only_those(self, repo: JobRepository) -> None:
        old = Workflow(id="w", canvas=Signature(task="t"), state=JobState.SUCCESS, created_at=0.0, finished_at=10.0)
        await repo.commit(
            Commit(jobs=[job("old", JobState.SUCCESS, finished_at=10.0)], idempotency=key("k-old", "old"))
        )
        await repo.commit(
            Commit(jobs=[job("new", JobState.SUCCESS, finished_at=90.0)], idempotency=key("k-new", "new"))
        )
        await repo.commit(Commit(jobs=[job("queued")], idempotency=key("k-queued", "queued")))
        await repo.commit(
            Commit(
                workflows=[old],
                jobs=[job("w", JobState.SUCCESS, finished_at=9.0, workflow_id="w")],  # a step with the workflow's id
                idempotency=key("k-w", "w", kind="workflow"),
            )
        )
        assert await repo.purge(50.0) == 3
        assert await repo.idempotency_key("k-old") is None and await repo.idempotency_key("k-w") is None
        assert await repo.idempotency_key("k-new") == key("k-new", "new")
        assert await repo.idempotency_key("k-queued") == key("k-queued", "queued")

    async def test_forgetting_a_step_does_not_free_its_workflows_key(self, repo: JobRepository) -> None:
        running = Workflow(id="w", canvas=Signature(task="t"), created_at=0.0)
        await repo.commit(
            Commit(
                workflows=[running],
                jobs=[job("w", JobState.SUCCESS, finished_at=1.0, workflow_id="w")],  # Celery's id: its final step's
                idempotency=key("k-w", "w", kind="workflow"),
            )
        )
        assert await repo.forget("w")
        assert await repo.idempotency_key("k-w") == key("k-w", "w", kind="workflow")
