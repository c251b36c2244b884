"""The purge contract, on every JobRepository adapter: old finished work goes, anything still needed stays."""

from __future__ import annotations

from typing import Any

from application.ports import Commit, JobFilter, JobRepository
from domain.canvas import Signature
from domain.job import Job
from domain.states import JobState
from domain.workflow import Workflow


def job(job_id: str, state: JobState, finished_at: float | None, **changes: Any) -> Job:
    return Job(id=job_id, task="t", due_at=0.0, created_at=0.0, state=state, finished_at=finished_at, **changes)


class TestPurge:
    async def test_only_finished_jobs_older_than_the_cutoff_go(self, repo: JobRepository) -> None:
        await repo.commit(
            Commit(
                jobs=[
                    job("old-ok", JobState.SUCCESS, 10.0),
                    job("old-failed", JobState.FAILURE, 10.0),
                    job("old-revoked", JobState.REVOKED, 10.0),
                    job("recent", JobState.SUCCESS, 100.0),
                    job("queued", JobState.PENDING, None),
                    job("running", JobState.STARTED, None),
                ]
            )
        )
        assert await repo.purge(50.0) == 3
        remaining = {item.id for item in (await repo.list_jobs(JobFilter(), limit=100)).items}
        assert remaining == {"recent", "queued", "running"}

    async def test_a_workflow_goes_with_its_jobs_once_all_are_old(self, repo: JobRepository) -> None:
        workflow = Workflow(
            id="w", canvas=Signature(task="t"), state=JobState.SUCCESS, created_at=0.0, finished_at=10.0
        )
        await repo.commit(
            Commit(
                workflows=[workflow],
                jobs=[
                    job("a", JobState.SUCCESS, 5.0, workflow_id="w"),
                    job("b", JobState.SUCCESS, 9.0, workflow_id="w"),
                ],
            )
        )
        assert await repo.purge(50.0) == 3
        assert await repo.get_workflow("w") is None and await repo.get("a") is None

    async def test_a_workflow_with_a_job_still_running_or_recent_is_kept_with_all_its_jobs(
        self, repo: JobRepository
    ) -> None:
        failed = Workflow(id="w", canvas=Signature(task="t"), state=JobState.FAILURE, created_at=0.0, finished_at=10.0)
        await repo.commit(
            Commit(
                workflows=[failed],
                jobs=[
                    job("failed-step", JobState.FAILURE, 10.0, workflow_id="w"),
                    job("sibling", JobState.STARTED, None, workflow_id="w"),
                ],
            )
        )
        assert await repo.purge(50.0) == 0
        assert await repo.get_workflow("w") is not None and await repo.get("failed-step") is not None

    async def test_an_unfinished_workflow_keeps_its_finished_jobs(self, repo: JobRepository) -> None:
        running = Workflow(id="w", canvas=Signature(task="t"), state=JobState.PENDING, created_at=0.0)
        await repo.commit(Commit(workflows=[running], jobs=[job("done-step", JobState.SUCCESS, 1.0, workflow_id="w")]))
        assert await repo.purge(50.0) == 0
        assert await repo.get("done-step") is not None
