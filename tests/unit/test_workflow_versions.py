"""Several engines advancing one workflow: a plan made on outcomes another engine changed since is
refused (WorkflowChanged) and made again on what is stored, so a chord's body starts exactly once even
when its last two members finish on two engines at the same moment (issue 13).

Two ``WorkflowEngine``s, each with its own cache of workflow states, share one repository, as two
replicas share one database."""

from __future__ import annotations

import pytest

from adapters.event_bus import InProcessEventBus
from adapters.memory_job_repository import InMemoryJobRepository
from application.ports import Commit
from application.registry import TaskDefinition, TaskRegistry
from application.workflows import Advance, WorkflowEngine
from domain.canvas import Chord, Signature
from domain.errors import WorkflowChanged
from domain.job import Job
from domain.states import JobState
from tests.unit.fakes import CountingIds, FakeClock


def engine(repo: InMemoryJobRepository, clock: FakeClock, ids: CountingIds) -> WorkflowEngine:
    registry = TaskRegistry()
    registry.register(TaskDefinition(name="add", fn=lambda x, y: x + y))
    registry.register(TaskDefinition(name="total", fn=lambda values: sum(values)))
    return WorkflowEngine(repo, registry, clock, ids, InProcessEventBus())


@pytest.fixture
def parts() -> tuple[InMemoryJobRepository, FakeClock, CountingIds]:
    return InMemoryJobRepository(), FakeClock(), CountingIds()


async def started_chord(first: WorkflowEngine, repo: InMemoryJobRepository) -> tuple[str, list[Job]]:
    chord = Chord(
        header=[Signature(task="add", args=[1, 1]), Signature(task="add", args=[2, 2])], body=Signature(task="total")
    )
    advance = Advance()
    workflow = await first.start(advance, chord)
    await first.apply(advance)
    members = await repo.workflow_jobs(workflow.id)
    assert len(members) == 2
    return workflow.id, [member.started(owner="w", now=1_000.0, lease_until=2_000.0) for member in members]


def succeeded(job: Job, result: int) -> Job:
    return job.succeeded(result, now=1_001.0)


async def bodies(repo: InMemoryJobRepository, workflow_id: str) -> list[Job]:
    return [job for job in await repo.workflow_jobs(workflow_id) if job.task == "total"]


async def test_the_last_members_finishing_on_two_engines_at_once_start_the_body_once(
    parts: tuple[InMemoryJobRepository, FakeClock, CountingIds],
) -> None:
    repo, clock, ids = parts
    a, b = engine(repo, clock, ids), engine(repo, clock, ids)
    workflow_id, (one, two) = await started_chord(a, repo)
    await repo.commit(Commit(jobs=[one, two]))
    await b.guard(Advance(), workflow_id)  # b has loaded the workflow too, before either member finished
    b.forget(workflow_id)
    on_a, on_b = Advance(), Advance()
    await a.record(on_a, succeeded(one, 2))  # each sees the other member still running: no body yet
    await b.record(on_b, succeeded(two, 4))
    assert not [job for job in on_a.commit.jobs + on_b.commit.jobs if job.task == "total"]

    await a.apply(on_a)
    with pytest.raises(WorkflowChanged):
        await b.apply(on_b)  # planned on outcomes a changed since: refused whole
    assert (await repo.get(two.id)) == two  # nothing of it was stored
    await b.store(succeeded(two, 4))  # planned again on what is stored

    [body] = await bodies(repo, workflow_id)
    assert body.args == [[2, 4]]


async def test_one_engine_commits_its_advances_in_the_order_it_plans_them_without_conflict(
    parts: tuple[InMemoryJobRepository, FakeClock, CountingIds],
) -> None:
    repo, clock, ids = parts
    a = engine(repo, clock, ids)
    workflow_id, (one, two) = await started_chord(a, repo)
    first, second = Advance(), Advance()
    await a.record(first, succeeded(one, 2))
    await a.record(second, succeeded(two, 4))  # planned on the first's outcome, before it is stored
    await a.apply(first)
    await a.apply(second)
    [body] = await bodies(repo, workflow_id)
    assert body.args == [[2, 4]]
    assert (await repo.get_workflow(workflow_id)).version == 2  # type: ignore[union-attr]


async def test_a_revoke_on_one_engine_makes_the_other_plan_again(
    parts: tuple[InMemoryJobRepository, FakeClock, CountingIds],
) -> None:
    repo, clock, ids = parts
    a, b = engine(repo, clock, ids), engine(repo, clock, ids)
    workflow_id, (one, _) = await started_chord(a, repo)
    on_b = Advance()
    await b.record(on_b, succeeded(one, 2))
    revoke = Advance()
    await a.guard(revoke, workflow_id)
    stored = await repo.get_workflow(workflow_id)
    assert stored is not None
    revoke.commit.workflows.append(stored.finished(JobState.REVOKED, result=None, error=None, now=1_002.0))
    await a.apply(revoke)
    with pytest.raises(WorkflowChanged):
        await b.apply(on_b)
