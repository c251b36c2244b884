"""What every JobRepository promises, checked against each adapter (see conftest: memory, SQLite, PostgreSQL)."""

from __future__ import annotations

import asyncio
import math
from typing import Any

import msgspec
import pytest

from application.ports import Commit, Guard, JobFilter, JobRepository
from domain.canvas import Chain, Chord, Group, Signature
from domain.errors import Conflict, WorkflowChanged
from domain.job import CallOptions, ErrorInfo, Job, Progress
from domain.states import JobState
from domain.workflow import Lineage, Workflow
from entrypoints.compat.threads import BlockingAccess

NOW = 1_000.0


def make_job(job_id: str, **changes: Any) -> Job:
    fields: dict[str, Any] = {"task": "tasks.add", "due_at": NOW, "created_at": NOW}
    fields.update(changes)
    return Job(id=job_id, **fields)


def make_workflow(workflow_id: str, **changes: Any) -> Workflow:
    fields: dict[str, Any] = {"canvas": Signature(task="tasks.add", args=[1, 2]), "created_at": NOW}
    fields.update(changes)
    return Workflow(id=workflow_id, **fields)


async def put(repo: JobRepository, *jobs: Job) -> None:
    await repo.commit(Commit(jobs=list(jobs)))


async def claim_ids(repo: JobRepository, *, limit: int = 100, now: float = NOW, owner: str = "w1") -> list[str]:
    claimed = await repo.claim(owner=owner, now=now, limit=limit, lease_until=now + 60)
    return [job.id for job in claimed]


async def lease(repo: JobRepository, job: Job, owner: str, *, until: float = NOW + 60) -> Job:
    """Store ``job`` as claimed by ``owner``."""
    leased = job.started(owner=owner, now=NOW, lease_until=until)
    await put(repo, leased)
    return leased


async def all_pages(repo: JobRepository, job_filter: JobFilter, limit: int) -> list[list[str]]:
    pages: list[list[str]] = []
    cursor: str | None = None
    while True:
        page = await repo.list_jobs(job_filter, limit=limit, cursor=cursor)
        pages.append([job.id for job in page.items])
        if page.next_cursor is None:
            return pages
        assert len(pages) < 1_000, "pagination does not end"
        cursor = page.next_cursor


FULL_JOB = Job(
    id="job-ü-1",
    task="reports.build_ünïcødé_📈",
    args=[1, -2.5, "naïve ☃", None, True, [1, [2, [3, {"deep": ["x"]}]]], {"k": {"v": None}}, 2**53 + 1],
    kwargs={"größe": 3, "nested": {"list": [1, 2, {"a": "b"}], "empty": {}, "none": None}, "": "empty key"},
    state=JobState.STARTED,
    priority=7,
    due_at=1_732_791_234.123456,
    created_at=1_732_791_200.000001,
    started_at=1_732_791_235.5,
    finished_at=None,
    attempts=2,
    max_retries=5,
    time_limit=12.5,
    retry_on_worker_lost=False,
    result={"rows": [1, 2, 3], "label": "ok ✓", "ratio": 0.1},
    error=ErrorInfo(
        type="ValueError", message="bad ✗ value", traceback='Traceback (most recent call last):\n  File "x"'
    ),
    progress=Progress(state="PROGRESS", meta={"done": 3, "of": 10, "steps": ["a", "b"]}),
    workflow_id="wf-1",
    node="0.1.b",
    lease_owner="engine-a",
    lease_expires_at=1_732_791_295.25,
    waiting_on="wf-child",
    options=CallOptions(
        eta=1_732_791_234.5,
        expires=1_732_799_999.0,
        soft_time_limit=3.0,
        queue="reports",
        routing_key="reports.daily",
        headers={"x-trace": "abc"},
        ignore_result=True,
        parent_id="parent-1",
        root_id="root-1",
        group_id="g-1",
        group_index=2,
        link=[Signature(task="cb", args=[1], immutable=True)],
        link_error=[Chain(steps=[Signature(task="eb"), Signature(task="eb2", id="e2")])],
        replaced_task_nesting=1,
        properties={"app_id": "1234"},
        argsrepr="(...)",
    ),
)

NESTED_CANVAS = Chain(
    steps=[
        Group(
            members=[
                Signature(task="fetch", args=["https://example.org/ü"], kwargs={"timeout": 3}),
                Signature(task="fetch", args=["b"], countdown=1.5, priority=3, immutable=True),
            ]
        ),
        Chord(
            header=[
                Signature(task="parse", max_retries=1, time_limit=2.0),
                Chain(steps=[Signature(task="a"), Group(members=[Signature(task="b", eta=123.0)])]),
            ],
            body=Signature(task="merge", kwargs={"how": {"deep": [1, None]}}),
        ),
        Signature(task="publish"),
    ]
)


class TestRoundTrip:
    async def test_every_job_field_survives_commit_then_get(self, repo: JobRepository) -> None:
        await put(repo, FULL_JOB)

        got = await repo.get(FULL_JOB.id)

        assert got == FULL_JOB
        assert got is not None
        assert msgspec.structs.asdict(got) == msgspec.structs.asdict(FULL_JOB)
        assert isinstance(got.state, JobState)
        assert isinstance(got.error, ErrorInfo)
        assert isinstance(got.progress, Progress)
        assert got.args[-1] == 2**53 + 1
        assert isinstance(got.args[-1], int)

    async def test_a_job_with_only_defaults_survives(self, repo: JobRepository) -> None:
        job = make_job("plain")
        await put(repo, job)

        got = await repo.get("plain")

        assert got == job
        assert got is not None
        assert got.args == []
        assert got.kwargs == {}
        assert got.result is None
        assert got.error is None
        assert got.progress is None
        assert got.retry_on_worker_lost is True

    async def test_a_max_retries_of_none_means_for_ever_and_survives(self, repo: JobRepository) -> None:
        job = make_job("forever", max_retries=None)
        await put(repo, job)

        got = await repo.get("forever")
        assert got is not None and got.max_retries is None

    async def test_a_result_comes_back_as_json_gives_it_tuples_as_lists(self, repo: JobRepository) -> None:
        job = make_job("t", state=JobState.SUCCESS, result=(("id", None), [("c", 1)]), finished_at=NOW + 1)
        await put(repo, job)

        got = await repo.get("t")
        assert got is not None and got.result == [["id", None], [["c", 1]]]

    @pytest.mark.parametrize("result", [None, 0, False, "", [], {}, [None], {"k": None}, 0.5, "null"])
    async def test_result_values_come_back_as_stored(self, repo: JobRepository, result: Any) -> None:
        job = make_job("r", state=JobState.SUCCESS, result=result, finished_at=NOW + 1)
        await put(repo, job)

        got = await repo.get("r")

        assert got is not None
        assert got.result == result
        assert type(got.result) is type(result)

    async def test_error_without_traceback_and_progress_without_meta_survive(self, repo: JobRepository) -> None:
        job = make_job(
            "e",
            state=JobState.RETRY,
            error=ErrorInfo(type="Boom", message=""),
            progress=Progress(state="PROGRESS"),
        )
        await put(repo, job)

        assert await repo.get("e") == job

    async def test_unknown_ids_read_as_none(self, repo: JobRepository) -> None:
        assert await repo.get("nope") is None
        assert await repo.get_workflow("nope") is None

    async def test_workflow_with_nested_canvas_survives(self, repo: JobRepository) -> None:
        workflow = Workflow(
            id="wf-ü",
            canvas=NESTED_CANVAS,
            state=JobState.FAILURE,
            result=[[1, 2], {"merged": True}],
            error=ErrorInfo(type="KeyError", message="'x'", traceback="tb"),
            created_at=1_732_791_200.5,
            finished_at=1_732_791_300.25,
            parent_job_id="parent-job",
            lineage=Lineage(parent_id="p", root_id="r", replaced_task_nesting=2),
            idempotency_key="order-7",
        )
        await repo.commit(Commit(workflows=[workflow]))

        got = await repo.get_workflow("wf-ü")

        assert got == workflow
        assert got is not None
        assert isinstance(got.canvas, Chain)
        assert isinstance(got.canvas.steps[0], Group)
        assert isinstance(got.canvas.steps[1], Chord)
        assert isinstance(got.state, JobState)

    async def test_a_frozen_canvas_with_callbacks_and_an_open_chord_survives(self, repo: JobRepository) -> None:
        canvas = Chain(
            steps=[
                Signature(task="a", id="a1", link=[Signature(task="cb")], link_error=[Signature(task="eb")]),
                Chord(header=[Signature(task="h", id="h1", queue="q")], body=Signature(task="b"), id="c1", open=True),
            ]
        )
        workflow = Workflow(id="wf-open", canvas=canvas, created_at=1.0)
        await repo.commit(Commit(workflows=[workflow]))

        assert await repo.get_workflow("wf-open") == workflow

    async def test_a_workflow_with_only_defaults_survives(self, repo: JobRepository) -> None:
        workflow = make_workflow("wf")
        await repo.commit(Commit(workflows=[workflow]))

        assert await repo.get_workflow("wf") == workflow


class TestChildren:
    async def test_the_jobs_a_job_started_in_the_order_they_were_stored(self, repo: JobRepository) -> None:
        parent = make_job("parent")
        kids = [make_job(f"kid-{i}", options=CallOptions(parent_id="parent")) for i in range(3)]
        other = make_job("other", options=CallOptions(parent_id="someone-else"))
        await put(repo, parent, kids[2], other, kids[0], kids[1])

        assert [job.id for job in await repo.children("parent")] == ["kid-2", "kid-0", "kid-1"]
        assert await repo.children("kid-0") == []
        assert await repo.children("nope") == []


class TestGetMany:
    async def test_existing_jobs_by_id_unknown_ids_left_out(self, repo: JobRepository) -> None:
        await put(repo, make_job("a", args=[1]), make_job("b", state=JobState.SUCCESS, result=2))

        found = await repo.get_many(["b", "nope", "a", "a"])

        assert found == {"a": make_job("a", args=[1]), "b": make_job("b", state=JobState.SUCCESS, result=2)}
        assert await repo.get_many([]) == {}

    async def test_more_ids_than_one_read_takes(self, repo: JobRepository) -> None:
        jobs = [make_job(f"j{i}", args=[i]) for i in range(1200)]
        await put(repo, *jobs)

        found = await repo.get_many([job.id for job in jobs])

        assert found == {job.id: job for job in jobs}


class TestBlockingAccess:
    """The blocking reads every repository offers callers on plain threads
    (``entrypoints.compat.threads.BlockingAccess``) answer as the port's async reads do, from any thread
    and on the loop's own."""

    async def test_blocking_reads_agree_with_the_async_ones_from_another_thread(
        self, blocking_repo: JobRepository, access: BlockingAccess
    ) -> None:
        repo = blocking_repo
        parent = make_job("parent", workflow_id="wf")
        kid = make_job("kid", options=CallOptions(parent_id="parent"))
        await repo.commit(Commit(jobs=[parent, kid], workflows=[make_workflow("wf")]))

        assert await asyncio.to_thread(access.peek, "parent") == await repo.get("parent")
        assert await asyncio.to_thread(access.peek, "nope") is None
        assert await asyncio.to_thread(access.peek_many, ["kid", "nope"]) == await repo.get_many(["kid", "nope"])
        assert await asyncio.to_thread(access.peek_children, "parent") == await repo.children("parent")
        assert await asyncio.to_thread(access.peek_workflow, "wf") == await repo.get_workflow("wf")
        assert await asyncio.to_thread(access.peek_workflow, "nope") is None

    async def test_every_field_reads_back_through_peek_on_the_loop(
        self, blocking_repo: JobRepository, access: BlockingAccess
    ) -> None:
        workflow = Workflow(id="wf-ü", canvas=NESTED_CANVAS, created_at=1.0, lineage=Lineage(parent_id="p"))
        await blocking_repo.commit(Commit(jobs=[FULL_JOB], workflows=[workflow]))

        assert access.peek(FULL_JOB.id) == FULL_JOB
        assert access.peek_workflow("wf-ü") == workflow
        assert access.peek("nope") is None
        assert access.peek_workflow("nope") is None

    async def test_a_commit_from_a_thread_is_stored_whole_or_not_at_all(
        self, blocking_repo: JobRepository, access: BlockingAccess
    ) -> None:
        job = make_job("from-thread")
        stored = await asyncio.to_thread(access.commit_from_thread, Commit(jobs=[job]))

        assert await blocking_repo.get("from-thread") == (job if stored else None)
        assert access.peek("from-thread") == (job if stored else None)


class TestWorkflowVersions:
    """``Commit.workflow_versions``: how several engines advancing one workflow stay consistent."""

    async def test_a_new_workflow_is_at_version_0_and_an_upsert_keeps_the_version(self, repo: JobRepository) -> None:
        await repo.commit(Commit(workflows=[make_workflow("wf")]))
        assert (await repo.get_workflow("wf")).version == 0  # type: ignore[union-attr]
        await repo.commit(Commit(workflows=[make_workflow("wf")], workflow_versions={"wf": 0}))
        await repo.commit(Commit(workflows=[make_workflow("wf", state=JobState.SUCCESS, version=9)]))
        stored = await repo.get_workflow("wf")
        assert stored is not None and stored.version == 1 and stored.state == JobState.SUCCESS

    async def test_a_commit_planned_on_an_older_version_is_refused_whole(self, repo: JobRepository) -> None:
        await repo.commit(Commit(workflows=[make_workflow("wf")], jobs=[make_job("a", workflow_id="wf")]))
        await repo.commit(Commit(jobs=[make_job("b", workflow_id="wf")], workflow_versions={"wf": 0}))
        stale = Commit(
            jobs=[make_job("a", workflow_id="wf", state=JobState.SUCCESS), make_job("c", workflow_id="wf")],
            workflows=[make_workflow("wf", state=JobState.SUCCESS)],
            workflow_versions={"wf": 0},
        )
        with pytest.raises(WorkflowChanged):
            await repo.commit(stale)
        assert (await repo.get("a")) == make_job("a", workflow_id="wf")
        assert await repo.get("c") is None
        stored = await repo.get_workflow("wf")
        assert stored is not None and stored.version == 1 and stored.state == JobState.PENDING
        assert await repo.next_due_at() == NOW  # the refused commit's queue changes are not applied either

    async def test_a_workflow_that_is_gone_refuses_the_commit(self, repo: JobRepository) -> None:
        with pytest.raises(WorkflowChanged):
            await repo.commit(Commit(jobs=[make_job("a")], workflow_versions={"nope": 0}))
        assert await repo.get("a") is None

    async def test_of_two_commits_planned_on_one_version_at_once_exactly_one_lands(self, repo: JobRepository) -> None:
        await repo.commit(Commit(workflows=[make_workflow("wf")]))
        results = await asyncio.gather(
            *(
                repo.commit(Commit(jobs=[make_job(f"body-{i}", workflow_id="wf")], workflow_versions={"wf": 0}))
                for i in range(2)
            ),
            return_exceptions=True,
        )
        assert sorted(type(result).__name__ for result in results) == ["NoneType", "WorkflowChanged"]
        assert len(await repo.workflow_jobs("wf")) == 1
        assert (await repo.get_workflow("wf")).version == 1  # type: ignore[union-attr]


class TestUpsert:
    async def test_committing_a_known_job_overwrites_it(self, repo: JobRepository) -> None:
        await put(repo, make_job("a", args=[1]))
        await put(repo, make_job("a", args=[2], priority=5, state=JobState.REVOKED, finished_at=NOW))

        assert await repo.get("a") == make_job("a", args=[2], priority=5, state=JobState.REVOKED, finished_at=NOW)

    async def test_overwriting_clears_fields_set_to_none(self, repo: JobRepository) -> None:
        await put(repo, FULL_JOB)
        cleared = msgspec.structs.replace(
            FULL_JOB, error=None, progress=None, result=None, lease_owner=None, lease_expires_at=None
        )
        await put(repo, cleared)

        assert await repo.get(FULL_JOB.id) == cleared

    async def test_the_last_occurrence_of_a_job_wins_within_one_commit(self, repo: JobRepository) -> None:
        await repo.commit(Commit(jobs=[make_job("a", args=[1]), make_job("b"), make_job("a", args=[3])]))

        got = await repo.get("a")

        assert got is not None
        assert got.args == [3]
        page = await repo.list_jobs(JobFilter(), limit=10)
        assert [job.id for job in page.items] == ["b", "a"]

    async def test_an_overwritten_job_keeps_its_place_in_the_listing(self, repo: JobRepository) -> None:
        await put(repo, make_job("a"))
        await put(repo, make_job("b"))
        await put(repo, make_job("a", args=["changed"]))

        page = await repo.list_jobs(JobFilter(), limit=10)

        assert [job.id for job in page.items] == ["b", "a"]

    async def test_an_overwritten_job_keeps_its_place_in_the_queue(self, repo: JobRepository) -> None:
        await put(repo, make_job("a"))
        await put(repo, make_job("b"))
        await put(repo, make_job("a", args=["changed"]))

        assert await claim_ids(repo, limit=1) == ["a"]

    async def test_committing_a_known_workflow_overwrites_it(self, repo: JobRepository) -> None:
        await repo.commit(Commit(workflows=[make_workflow("wf")]))
        finished = make_workflow("wf").finished(JobState.SUCCESS, result=[3], error=None, now=NOW + 5)
        await repo.commit(Commit(workflows=[finished]))

        assert await repo.get_workflow("wf") == finished

    async def test_jobs_and_workflows_of_one_commit_land_together(self, repo: JobRepository) -> None:
        await repo.commit(
            Commit(
                jobs=[make_job("a", workflow_id="wf"), make_job("b", workflow_id="wf")],
                workflows=[make_workflow("wf")],
            )
        )

        assert await repo.get_workflow("wf") == make_workflow("wf")
        assert [job.id for job in await repo.workflow_jobs("wf")] == ["a", "b"]

    async def test_an_empty_commit_changes_nothing(self, repo: JobRepository) -> None:
        await repo.commit(Commit())

        assert await repo.count_by_state() == {}


class TestGuard:
    async def test_owner_guard_accepts_the_lease_holder(self, repo: JobRepository) -> None:
        leased = await lease(repo, make_job("a"), "w1")
        done = leased.succeeded(42, now=NOW + 1)

        await repo.commit(Commit(jobs=[done], guard=Guard(job_id="a", owner="w1")))

        assert await repo.get("a") == done

    async def test_owner_guard_rejects_when_the_lease_is_elsewhere_and_stores_nothing(
        self, repo: JobRepository
    ) -> None:
        leased = await lease(repo, make_job("a"), "w2")
        commit = Commit(
            jobs=[leased.succeeded(42, now=NOW + 1), make_job("unblocked")],
            workflows=[make_workflow("wf")],
            guard=Guard(job_id="a", owner="w1"),
        )

        with pytest.raises(Conflict):
            await repo.commit(commit)

        assert await repo.get("a") == leased
        assert await repo.get("unblocked") is None
        assert await repo.get_workflow("wf") is None

    async def test_owner_guard_rejects_a_job_with_no_lease(self, repo: JobRepository) -> None:
        job = make_job("a")
        await put(repo, job)

        with pytest.raises(Conflict):
            await repo.commit(Commit(jobs=[make_job("a", args=[9])], guard=Guard(job_id="a", owner="w1")))

        assert await repo.get("a") == job

    async def test_a_guard_on_a_missing_job_conflicts(self, repo: JobRepository) -> None:
        with pytest.raises(Conflict):
            await repo.commit(Commit(jobs=[make_job("a")], guard=Guard(job_id="ghost", states=frozenset(JobState))))

        assert await repo.get("a") is None

    async def test_states_guard_accepts_a_job_in_one_of_the_states(self, repo: JobRepository) -> None:
        job = make_job("a", state=JobState.RETRY)
        await put(repo, job)
        revoked = job.failed(ErrorInfo(type="Revoked", message=""), now=NOW, state=JobState.REVOKED)

        await repo.commit(
            Commit(jobs=[revoked], guard=Guard(job_id="a", states=frozenset({JobState.PENDING, JobState.RETRY})))
        )

        assert await repo.get("a") == revoked

    async def test_states_guard_rejects_a_job_in_another_state(self, repo: JobRepository) -> None:
        leased = await lease(repo, make_job("a"), "w1")

        with pytest.raises(Conflict):
            await repo.commit(
                Commit(
                    jobs=[make_job("a", state=JobState.REVOKED)],
                    guard=Guard(job_id="a", states=frozenset({JobState.PENDING})),
                )
            )

        assert await repo.get("a") == leased

    async def test_a_guard_with_owner_and_states_needs_both(self, repo: JobRepository) -> None:
        await lease(repo, make_job("a"), "w1")
        change = make_job("a", args=["x"])

        with pytest.raises(Conflict):
            await repo.commit(
                Commit(jobs=[change], guard=Guard(job_id="a", owner="w1", states=frozenset({JobState.PENDING})))
            )
        with pytest.raises(Conflict):
            await repo.commit(
                Commit(jobs=[change], guard=Guard(job_id="a", owner="w2", states=frozenset({JobState.STARTED})))
            )
        await repo.commit(
            Commit(jobs=[change], guard=Guard(job_id="a", owner="w1", states=frozenset({JobState.STARTED})))
        )

        assert await repo.get("a") == change

    async def test_concurrent_guarded_commits_see_each_other_in_order(self, repo: JobRepository) -> None:
        job = make_job("a")
        await put(repo, job)
        queued_only = Guard(job_id="a", states=frozenset({JobState.PENDING, JobState.RETRY}))
        first = job.failed(ErrorInfo(type="Revoked", message="1"), now=NOW, state=JobState.REVOKED)
        second = job.failed(ErrorInfo(type="Revoked", message="2"), now=NOW, state=JobState.REVOKED)

        outcomes = await asyncio.gather(
            repo.commit(Commit(jobs=[first], guard=queued_only)),
            repo.commit(Commit(jobs=[second], guard=queued_only)),
            return_exceptions=True,
        )

        assert outcomes[0] is None
        assert isinstance(outcomes[1], Conflict)
        assert await repo.get("a") == first

    async def test_a_guard_sees_a_job_created_by_an_earlier_concurrent_commit(self, repo: JobRepository) -> None:
        created = make_job("a")
        changed = make_job("a", args=["changed"])

        await asyncio.gather(
            repo.commit(Commit(jobs=[created])),
            repo.commit(Commit(jobs=[changed], guard=Guard(job_id="a", states=frozenset({JobState.PENDING})))),
        )

        assert await repo.get("a") == changed

    async def test_a_rejected_commit_does_not_affect_concurrent_ones(self, repo: JobRepository) -> None:
        await lease(repo, make_job("a"), "w2")

        outcomes = await asyncio.gather(
            put(repo, make_job("before")),
            repo.commit(Commit(jobs=[make_job("lost")], guard=Guard(job_id="a", owner="w1"))),
            put(repo, make_job("after")),
            return_exceptions=True,
        )

        assert outcomes[0] is None
        assert isinstance(outcomes[1], Conflict)
        assert outcomes[2] is None
        assert await repo.get("before") is not None
        assert await repo.get("after") is not None
        assert await repo.get("lost") is None

    async def test_a_guard_sees_a_concurrent_claim(self, repo: JobRepository) -> None:
        job = make_job("a")
        await put(repo, job)
        revoked = job.failed(ErrorInfo(type="Revoked", message=""), now=NOW, state=JobState.REVOKED)

        claimed, outcome = await asyncio.gather(
            repo.claim(owner="w1", now=NOW, limit=1, lease_until=NOW + 60),
            repo.commit(Commit(jobs=[revoked], guard=Guard(job_id="a", states=frozenset({JobState.PENDING})))),
            return_exceptions=True,
        )

        assert isinstance(claimed, list)
        assert [job.id for job in claimed] == ["a"]
        assert isinstance(outcome, Conflict)
        assert await repo.get("a") == claimed[0]


class TestClaim:
    async def test_higher_priority_first(self, repo: JobRepository) -> None:
        await put(repo, make_job("low", priority=0), make_job("high", priority=9), make_job("mid", priority=5))

        assert await claim_ids(repo) == ["high", "mid", "low"]

    async def test_negative_priority_after_zero(self, repo: JobRepository) -> None:
        await put(repo, make_job("neg", priority=-3), make_job("zero"))

        assert await claim_ids(repo) == ["zero", "neg"]

    async def test_equal_priority_earlier_due_first(self, repo: JobRepository) -> None:
        await put(repo, make_job("later", due_at=NOW - 1), make_job("earlier", due_at=NOW - 5))

        assert await claim_ids(repo) == ["earlier", "later"]

    async def test_equal_priority_and_due_first_submitted_first(self, repo: JobRepository) -> None:
        ids = ["m", "c", "x", "a", "q"]
        for job_id in ids:
            await put(repo, make_job(job_id))

        assert await claim_ids(repo) == ids

    async def test_first_submitted_first_within_one_commit(self, repo: JobRepository) -> None:
        await put(repo, make_job("z"), make_job("b"), make_job("k"))

        assert await claim_ids(repo) == ["z", "b", "k"]

    async def test_priority_beats_due_time_and_due_time_beats_submission(self, repo: JobRepository) -> None:
        await put(
            repo,
            make_job("p0-early", priority=0, due_at=NOW - 100),
            make_job("p1-late", priority=1, due_at=NOW - 1),
            make_job("p1-early-2nd", priority=1, due_at=NOW - 50),
            make_job("p1-early-1st", priority=1, due_at=NOW - 50),
        )

        assert await claim_ids(repo) == ["p1-early-2nd", "p1-early-1st", "p1-late", "p0-early"]

    async def test_skips_jobs_not_yet_due(self, repo: JobRepository) -> None:
        await put(
            repo,
            make_job("future-high", priority=9, due_at=NOW + 10),
            make_job("due-now", due_at=NOW),
            make_job("due-past", due_at=NOW - 1),
        )

        assert await claim_ids(repo) == ["due-past", "due-now"]
        assert await claim_ids(repo) == []
        assert await claim_ids(repo, now=NOW + 10) == ["future-high"]

    async def test_respects_the_limit(self, repo: JobRepository) -> None:
        await put(repo, *(make_job(f"j{i}") for i in range(5)))

        assert await claim_ids(repo, limit=2) == ["j0", "j1"]
        assert await claim_ids(repo, limit=2) == ["j2", "j3"]
        assert await claim_ids(repo, limit=2) == ["j4"]

    async def test_a_zero_limit_claims_nothing(self, repo: JobRepository) -> None:
        await put(repo, make_job("a"))

        assert await claim_ids(repo, limit=0) == []
        assert await claim_ids(repo, limit=1) == ["a"]

    async def test_claimed_jobs_are_started_with_an_attempt_counted_and_a_lease(self, repo: JobRepository) -> None:
        job = make_job(
            "a",
            state=JobState.RETRY,
            attempts=2,
            due_at=NOW - 3,
            error=ErrorInfo(type="E", message="m"),
            progress=Progress(state="PROGRESS", meta=1),
            args=[{"x": 1}],
        )
        await put(repo, job)

        claimed = await repo.claim(owner="engine-1", now=NOW, limit=1, lease_until=NOW + 30)

        expected = job.started(owner="engine-1", now=NOW, lease_until=NOW + 30)
        assert claimed == [expected]
        assert claimed[0].state is JobState.STARTED
        assert claimed[0].attempts == 3
        assert claimed[0].progress is None
        assert await repo.get("a") == expected

    async def test_only_pending_and_retry_jobs_are_claimed(self, repo: JobRepository) -> None:
        await put(
            repo,
            make_job("pending"),
            make_job("retry", state=JobState.RETRY),
            make_job("started", state=JobState.STARTED, lease_owner="w0", lease_expires_at=NOW - 100),
            make_job("success", state=JobState.SUCCESS),
            make_job("failure", state=JobState.FAILURE),
            make_job("revoked", state=JobState.REVOKED),
        )

        assert sorted(await claim_ids(repo)) == ["pending", "retry"]

    async def test_a_claimed_job_is_not_claimed_again(self, repo: JobRepository) -> None:
        await put(repo, make_job("a"))

        assert await claim_ids(repo, owner="w1") == ["a"]
        assert await claim_ids(repo, owner="w2") == []

    async def test_a_requeued_job_is_claimed_again_with_another_attempt(self, repo: JobRepository) -> None:
        await put(repo, make_job("a"))
        (first,) = await repo.claim(owner="w1", now=NOW, limit=1, lease_until=NOW + 60)
        await put(repo, first.requeued(now=NOW + 1))

        (second,) = await repo.claim(owner="w2", now=NOW + 1, limit=1, lease_until=NOW + 61)

        assert second.attempts == 2
        assert second.lease_owner == "w2"
        assert second.started_at == NOW + 1

    async def test_a_job_moved_later_is_not_due_any_more(self, repo: JobRepository) -> None:
        await put(repo, make_job("a", due_at=NOW - 1))
        await put(repo, make_job("a", due_at=NOW + 100))

        assert await claim_ids(repo) == []
        assert await claim_ids(repo, now=NOW + 100) == ["a"]

    async def test_a_job_whose_priority_changed_is_claimed_by_its_new_priority(self, repo: JobRepository) -> None:
        await put(repo, make_job("a", priority=9), make_job("b", priority=5))
        await put(repo, make_job("a", priority=1))

        assert await claim_ids(repo) == ["b", "a"]

    async def test_concurrent_claims_never_return_the_same_job_twice(self, repo: JobRepository) -> None:
        await put(repo, *(make_job(f"j{i:02}", priority=i % 3) for i in range(30)))

        batches = await asyncio.gather(
            *(repo.claim(owner=f"w{i}", now=NOW, limit=4, lease_until=NOW + 60) for i in range(10))
        )

        claimed = [job.id for batch in batches for job in batch]
        assert len(claimed) == 30
        assert len(set(claimed)) == 30
        for index, batch in enumerate(batches):
            assert all(job.lease_owner == f"w{index}" for job in batch)
            stored = [await repo.get(job.id) for job in batch]
            assert stored == batch


class TestSaveProgress:
    async def test_the_lease_holder_records_progress(self, repo: JobRepository) -> None:
        leased = await lease(repo, make_job("a"), "w1")
        progress = Progress(state="PROGRESS", meta={"current": 5, "total": 10, "note": "ünï"})

        assert await repo.save_progress("a", "w1", progress) is True

        assert await repo.get("a") == msgspec.structs.replace(leased, progress=progress)

    async def test_another_owner_is_refused_and_nothing_changes(self, repo: JobRepository) -> None:
        leased = await lease(repo, make_job("a"), "w1")

        assert await repo.save_progress("a", "w2", Progress(state="PROGRESS", meta=1)) is False

        assert await repo.get("a") == leased

    async def test_an_unleased_or_unknown_job_is_refused(self, repo: JobRepository) -> None:
        await put(repo, make_job("a"))

        assert await repo.save_progress("a", "w1", Progress(state="PROGRESS")) is False
        assert await repo.save_progress("ghost", "w1", Progress(state="PROGRESS")) is False
        assert await repo.get("ghost") is None

    async def test_the_latest_progress_wins(self, repo: JobRepository) -> None:
        await lease(repo, make_job("a"), "w1")

        await asyncio.gather(*(repo.save_progress("a", "w1", Progress(state="PROGRESS", meta=i)) for i in range(5)))

        got = await repo.get("a")
        assert got is not None
        assert got.progress == Progress(state="PROGRESS", meta=4)


class TestRenewLeases:
    async def test_extends_only_the_leases_the_owner_holds(self, repo: JobRepository) -> None:
        mine = await lease(repo, make_job("mine"), "w1")
        also_mine = await lease(repo, make_job("also-mine"), "w1")
        theirs = await lease(repo, make_job("theirs"), "w2")

        await repo.renew_leases("w1", ["mine", "theirs", "ghost"], NOW + 500)

        assert await repo.get("mine") == msgspec.structs.replace(mine, lease_expires_at=NOW + 500)
        assert await repo.get("theirs") == theirs
        assert await repo.get("also-mine") == also_mine
        assert await repo.get("ghost") is None

    async def test_an_empty_list_renews_nothing(self, repo: JobRepository) -> None:
        leased = await lease(repo, make_job("a"), "w1")

        await repo.renew_leases("w1", [], NOW + 500)

        assert await repo.get("a") == leased


class TestWorkflowJobs:
    async def test_jobs_come_in_creation_order(self, repo: JobRepository) -> None:
        await put(repo, make_job("c", workflow_id="wf", node="0"))
        await put(repo, make_job("other", workflow_id="wf2"), make_job("a", workflow_id="wf", node="1"))
        await put(repo, make_job("b", workflow_id="wf", node="2"), make_job("loose"))
        await put(repo, make_job("c", workflow_id="wf", node="0", state=JobState.SUCCESS, result=1))

        jobs = await repo.workflow_jobs("wf")

        assert [job.id for job in jobs] == ["c", "a", "b"]
        assert jobs[0].result == 1

    async def test_an_unknown_workflow_has_no_jobs(self, repo: JobRepository) -> None:
        await put(repo, make_job("a", workflow_id="wf"))

        assert await repo.workflow_jobs("ghost") == []


class TestListJobs:
    async def test_newest_first(self, repo: JobRepository) -> None:
        for job_id in ["b", "c", "a"]:
            await put(repo, make_job(job_id))

        page = await repo.list_jobs(JobFilter(), limit=10)

        assert [job.id for job in page.items] == ["a", "c", "b"]
        assert page.next_cursor is None
        assert page.items[0] == make_job("a")

    async def test_an_empty_repository_lists_nothing(self, repo: JobRepository) -> None:
        page = await repo.list_jobs(JobFilter(), limit=10)

        assert page.items == []
        assert page.next_cursor is None

    async def test_filters_by_state_task_and_workflow(self, repo: JobRepository) -> None:
        await put(
            repo,
            make_job("a", task="t1", workflow_id="w1"),
            make_job("b", task="t2", workflow_id="w1", state=JobState.SUCCESS),
            make_job("c", task="t1", workflow_id="w2", state=JobState.SUCCESS),
            make_job("d", task="t1", state=JobState.SUCCESS),
        )

        async def ids(job_filter: JobFilter) -> list[str]:
            return [job.id for job in (await repo.list_jobs(job_filter, limit=10)).items]

        assert await ids(JobFilter(state=JobState.SUCCESS)) == ["d", "c", "b"]
        assert await ids(JobFilter(task="t1")) == ["d", "c", "a"]
        assert await ids(JobFilter(workflow_id="w1")) == ["b", "a"]
        assert await ids(JobFilter(state=JobState.SUCCESS, task="t1")) == ["d", "c"]
        assert await ids(JobFilter(state=JobState.SUCCESS, task="t1", workflow_id="w2")) == ["c"]
        assert await ids(JobFilter(state=JobState.RETRY)) == []
        assert await ids(JobFilter(task="nope")) == []

    async def test_pages_through_everything_without_duplicates_or_gaps(self, repo: JobRepository) -> None:
        ids = [f"job-{i:03}" for i in range(23)]
        for job_id in ids:
            await put(repo, make_job(job_id))

        pages = await all_pages(repo, JobFilter(), limit=5)

        assert [len(page) for page in pages] == [5, 5, 5, 5, 3]
        assert [job_id for page in pages for job_id in page] == list(reversed(ids))

    async def test_the_last_full_page_has_no_cursor(self, repo: JobRepository) -> None:
        await put(repo, *(make_job(f"j{i}") for i in range(10)))

        pages = await all_pages(repo, JobFilter(), limit=5)

        assert [len(page) for page in pages] == [5, 5]

    async def test_pages_through_a_filtered_listing(self, repo: JobRepository) -> None:
        for i in range(30):
            await put(repo, make_job(f"j{i:02}", task="even" if i % 2 == 0 else "odd"))

        pages = await all_pages(repo, JobFilter(task="even"), limit=4)

        assert [job_id for page in pages for job_id in page] == [f"j{i:02}" for i in range(28, -1, -2)]
        assert [len(page) for page in pages] == [4, 4, 4, 3]

    async def test_jobs_added_while_paging_do_not_disturb_later_pages(self, repo: JobRepository) -> None:
        await put(repo, *(make_job(f"old{i}") for i in range(6)))
        first = await repo.list_jobs(JobFilter(), limit=3)
        await put(repo, make_job("new"))
        await put(repo, make_job("old0", args=["updated"]))

        second = await repo.list_jobs(JobFilter(), limit=3, cursor=first.next_cursor)

        assert [job.id for job in first.items] == ["old5", "old4", "old3"]
        assert [job.id for job in second.items] == ["old2", "old1", "old0"]
        assert second.items[-1].args == ["updated"]
        assert second.next_cursor is None

    async def test_the_cursor_is_an_opaque_string(self, repo: JobRepository) -> None:
        await put(repo, *(make_job(f"j{i}") for i in range(3)))

        page = await repo.list_jobs(JobFilter(), limit=1)

        assert isinstance(page.next_cursor, str)


class TestNextDueAt:
    async def test_none_when_nothing_is_queued(self, repo: JobRepository) -> None:
        assert await repo.next_due_at() is None
        await put(repo, make_job("done", state=JobState.SUCCESS, due_at=1.0))
        await lease(repo, make_job("running", due_at=2.0), "w1")

        assert await repo.next_due_at() is None

    async def test_the_earliest_due_among_queued_jobs_whatever_their_priority(self, repo: JobRepository) -> None:
        await put(
            repo,
            make_job("high", priority=9, due_at=NOW + 50),
            make_job("low", priority=-1, due_at=NOW + 20),
            make_job("retry", state=JobState.RETRY, due_at=NOW + 30),
            make_job("finished", state=JobState.FAILURE, due_at=NOW + 1),
        )

        assert await repo.next_due_at() == NOW + 20

    async def test_a_retry_job_counts(self, repo: JobRepository) -> None:
        await put(repo, make_job("retry", state=JobState.RETRY, due_at=NOW + 7.5))

        assert await repo.next_due_at() == NOW + 7.5

    async def test_a_job_no_longer_queued_no_longer_counts(self, repo: JobRepository) -> None:
        await put(repo, make_job("later", due_at=NOW + 9), make_job("sooner", due_at=NOW + 4))
        await put(repo, make_job("sooner", state=JobState.SUCCESS, due_at=NOW + 4))

        assert await repo.next_due_at() == NOW + 9

    async def test_follows_claims_and_overwrites(self, repo: JobRepository) -> None:
        await put(repo, make_job("a", due_at=NOW - 1), make_job("b", due_at=NOW + 10))
        assert await repo.next_due_at() == NOW - 1

        await claim_ids(repo, limit=1)
        assert await repo.next_due_at() == NOW + 10

        await put(repo, make_job("b", due_at=NOW + 40))
        assert await repo.next_due_at() == NOW + 40

        await put(repo, make_job("b", due_at=NOW + 40, state=JobState.REVOKED))
        assert await repo.next_due_at() is None


class TestLeasedJobs:
    async def test_returns_started_jobs_whose_lease_expired_before_the_cutoff(self, repo: JobRepository) -> None:
        expired = await lease(repo, make_job("expired"), "w1", until=NOW - 10)
        await lease(repo, make_job("at-cutoff"), "w1", until=NOW)
        await lease(repo, make_job("fresh"), "w2", until=NOW + 10)
        expired_other = await lease(repo, make_job("expired-other"), "w2", until=NOW - 1)

        assert await repo.leased_jobs(expired_before=NOW) == [expired, expired_other]

    async def test_infinity_returns_every_leased_job(self, repo: JobRepository) -> None:
        first = await lease(repo, make_job("first"), "w1", until=NOW + 1e9)
        second = await lease(repo, make_job("second"), "w2", until=NOW - 10)
        await put(repo, make_job("queued"))
        await put(repo, make_job("done", state=JobState.SUCCESS, lease_owner=None))

        assert await repo.leased_jobs(expired_before=math.inf) == [first, second]

    async def test_ignores_started_jobs_without_a_lease(self, repo: JobRepository) -> None:
        leased = await lease(repo, make_job("replaced"), "w1", until=NOW - 10)
        await put(repo, leased.waiting_for("wf-child"))

        assert await repo.leased_jobs(expired_before=math.inf) == []

    async def test_ignores_finished_jobs(self, repo: JobRepository) -> None:
        leased = await lease(repo, make_job("a"), "w1", until=NOW - 10)
        await put(repo, leased.succeeded(1, now=NOW))

        assert await repo.leased_jobs(expired_before=math.inf) == []

    async def test_a_renewed_lease_is_no_longer_expired(self, repo: JobRepository) -> None:
        await lease(repo, make_job("a"), "w1", until=NOW - 10)
        await repo.renew_leases("w1", ["a"], NOW + 60)

        assert await repo.leased_jobs(expired_before=NOW) == []


class TestCountByState:
    async def test_empty_repository_counts_nothing(self, repo: JobRepository) -> None:
        assert await repo.count_by_state() == {}

    async def test_counts_jobs_per_state(self, repo: JobRepository) -> None:
        await put(
            repo,
            make_job("p1"),
            make_job("p2"),
            make_job("r", state=JobState.RETRY),
            make_job("s1", state=JobState.SUCCESS),
            make_job("s2", state=JobState.SUCCESS),
            make_job("s3", state=JobState.SUCCESS),
        )
        await claim_ids(repo, limit=1)

        assert await repo.count_by_state() == {"PENDING": 1, "RETRY": 1, "SUCCESS": 3, "STARTED": 1}

    async def test_counts_only_the_states_asked_for(self, repo: JobRepository) -> None:
        await put(
            repo,
            make_job("p1"),
            make_job("p2"),
            make_job("r", state=JobState.RETRY),
            make_job("s1", state=JobState.SUCCESS),
            make_job("f1", state=JobState.FAILURE),
        )
        await claim_ids(repo, limit=1)

        unfinished = {JobState.PENDING, JobState.RETRY, JobState.STARTED}
        assert await repo.count_by_state(unfinished) == {"PENDING": 1, "RETRY": 1, "STARTED": 1}
        assert await repo.count_by_state(["FAILURE", "REVOKED"]) == {"FAILURE": 1}
        assert await repo.count_by_state(()) == {}


class TestConcurrency:
    async def test_200_concurrent_commits_all_land(self, repo: JobRepository) -> None:
        await asyncio.gather(*(put(repo, make_job(f"j{i:03}", args=[i])) for i in range(200)))

        assert await repo.count_by_state() == {"PENDING": 200}
        for i in range(200):
            assert await repo.get(f"j{i:03}") == make_job(f"j{i:03}", args=[i])
        pages = await all_pages(repo, JobFilter(), limit=50)
        assert [job_id for page in pages for job_id in page] == [f"j{i:03}" for i in range(199, -1, -1)]

    async def test_concurrent_writes_of_every_kind_apply_in_call_order(self, repo: JobRepository) -> None:
        await put(repo, *(make_job(f"j{i}") for i in range(4)))

        claimed, saved, _, _, outcome = await asyncio.gather(
            repo.claim(owner="w1", now=NOW, limit=2, lease_until=NOW + 60),
            repo.save_progress("j0", "w1", Progress(state="PROGRESS", meta="half")),
            repo.renew_leases("w1", ["j1"], NOW + 120),
            put(repo, make_job("j9")),
            repo.commit(Commit(jobs=[make_job("j2", args=["x"])], guard=Guard(job_id="j1", owner="w1"))),
            return_exceptions=True,
        )

        assert isinstance(claimed, list)
        assert [job.id for job in claimed] == ["j0", "j1"]
        assert saved is True
        assert outcome is None
        j0, j1, j2 = [await repo.get(job_id) for job_id in ("j0", "j1", "j2")]
        assert j0 is not None
        assert j0.progress == Progress(state="PROGRESS", meta="half")
        assert j1 is not None
        assert j1.lease_expires_at == NOW + 120
        assert j2 == make_job("j2", args=["x"])
        assert await repo.get("j9") == make_job("j9")
