"""Celery's callbacks and growing chord headers, on the pure rules and on the services with fakes."""

from __future__ import annotations

from collections.abc import AsyncIterator

import msgspec
import pytest

from adapters.memory_job_repository import InMemoryJobRepository
from application.callbacks import callbacks_for, chord_errbacks
from application.engine import Engine, EngineSettings
from application.ports import Commit
from application.registry import TaskDefinition, TaskRegistry
from domain.canvas import Chain, Chord, Signature, final_id, freeze, partial, path_of_chord, with_header
from domain.errors import InvalidCanvas
from domain.job import CallOptions, ErrorInfo, Job
from domain.planner import LeafOutcome, plan
from domain.states import JobState
from tests.unit.fakes import FakeClock
from tests.unit.test_services import build_engine


def old_style(task_id: str) -> str:
    return task_id


def new_style(request: object, exc: object, traceback: object) -> None:
    return None


@pytest.fixture
def registry() -> TaskRegistry:
    registry = TaskRegistry()
    registry.register(TaskDefinition(name="old", fn=old_style))
    registry.register(TaskDefinition(name="new", fn=new_style))
    return registry


def finished(state: JobState, **options: object) -> Job:
    job = Job(id="j1", task="t", due_at=0.0, created_at=0.0, options=CallOptions(root_id="root", **options))  # type: ignore[arg-type]
    if state == JobState.SUCCESS:
        return msgspec.structs.replace(job, state=state, result=7)
    error = ErrorInfo(type="ValueError", message="bad", module="builtins", args=["bad"], traceback="tb")
    return msgspec.structs.replace(job, state=state, error=error)


class TestPartials:
    def test_arguments_are_prepended_and_kwargs_merged_with_the_calls_winning(self) -> None:
        sig = Signature(task="t", args=[2], kwargs={"a": 1, "b": 1})
        assert partial(sig, [8], {"b": 2}) == msgspec.structs.replace(sig, args=[8, 2], kwargs={"a": 1, "b": 2})

    def test_an_immutable_signature_keeps_its_own(self) -> None:
        sig = Signature(task="t", args=[2], immutable=True)
        assert partial(sig, [8], {"b": 2}) is sig

    def test_a_chain_passes_them_to_its_first_step_only(self) -> None:
        tree = partial(Chain(steps=[Signature(task="a"), Signature(task="b")]), [1], {})
        assert isinstance(tree, Chain) and tree.steps[0].args == [1] and tree.steps[1].args == []  # type: ignore[union-attr]


class TestCallbacks:
    def test_a_success_applies_its_links_with_the_result_prepended(self, registry: TaskRegistry) -> None:
        job = finished(JobState.SUCCESS, link=[Signature(task="old", args=[1])])
        [(canvas, lineage, _)] = callbacks_for(job, registry)
        assert canvas == Signature(task="old", args=[7, 1])
        assert (lineage.parent_id, lineage.root_id) == ("j1", "root")

    def test_an_old_style_errback_gets_the_failed_task_id(self, registry: TaskRegistry) -> None:
        job = finished(JobState.FAILURE, link_error=[Signature(task="old")])
        [(canvas, _, options)] = callbacks_for(job, registry)
        assert canvas == Signature(task="old", args=["j1"]) and options.errback_of is None

    def test_a_new_style_errback_gets_request_exception_and_traceback(self, registry: TaskRegistry) -> None:
        job = finished(JobState.FAILURE, link_error=[Signature(task="new")])
        [(canvas, _, options)] = callbacks_for(job, registry)
        assert isinstance(canvas, Signature) and options.errback_of == "j1"
        request, exc, traceback = canvas.args
        assert request["id"] == "j1" and request["root_id"] == "root"
        assert exc == {"type": "ValueError", "message": "bad", "module": "builtins", "args": ["bad"]}
        assert traceback == "tb"

    def test_a_revoked_job_calls_back_nothing(self, registry: TaskRegistry) -> None:
        job = finished(JobState.REVOKED, link_error=[Signature(task="old")], link=[Signature(task="old")])
        assert callbacks_for(job, registry) == []

    def test_a_broken_chord_header_calls_the_bodys_errbacks_with_a_chord_error(self, registry: TaskRegistry) -> None:
        body = Signature(task="t", id="body", link_error=[Signature(task="old")])
        canvas = Chord(header=[Signature(task="t", id="h0")], body=body, id="g")
        error = ErrorInfo(type="ValueError", message="bad")
        [(errback, _, _)] = chord_errbacks(canvas, "0", "h0", error, registry)
        assert errback == Signature(task="old", args=["body"])
        assert chord_errbacks(canvas, "b", "body", error, registry) == []


class TestOpenChords:
    def test_an_open_chord_waits_even_when_its_header_is_done(self) -> None:
        chord = Chord(header=[Signature(task="t")], body=Signature(task="b"), open=True)
        outcomes = {"0": LeafOutcome(job_id="x", task="t", state=JobState.SUCCESS, result=1)}
        assert plan(chord, outcomes).ready == []
        closed = with_header(chord, "", [], close=True)
        assert [r.args for r in plan(closed, outcomes).ready] == [[[1]]]

    def test_a_member_added_to_a_chord_inside_a_chain_lands_in_that_header(self) -> None:
        tree = Chain(steps=[Signature(task="a"), Chord(header=[], body=Signature(task="b"), id="c", open=True)])
        assert path_of_chord(tree, "c") == "1"
        grown = with_header(tree, "1", [Signature(task="m")], close=False)
        assert isinstance(grown, Chain) and grown.steps[1] == Chord(
            header=[Signature(task="m")], body=Signature(task="b"), id="c", open=True
        )
        with pytest.raises(InvalidCanvas):
            with_header(tree, "0", [], close=True)

    def test_a_workflow_is_stored_under_the_id_of_its_last_task(self) -> None:
        frozen = freeze(Chain(steps=[Signature(task="a"), Signature(task="b", id="last")]), iter("xyz").__next__)
        assert final_id(frozen) == "last"


@pytest.fixture
async def engine() -> AsyncIterator[Engine]:
    built = build_engine(InMemoryJobRepository(), FakeClock(), EngineSettings(max_concurrent_tasks=2))
    yield built
    await built.runner.close()


class TestChordGrowthService:
    async def test_added_members_are_stored_and_queued_in_one_commit(self, engine: Engine) -> None:
        open_chord = Chord(header=[], body=Signature(task="add", args=[0]), id="c", open=True)
        workflow = await engine.jobs.submit_canvas(open_chord)
        assert await engine.jobs.workflow_jobs(workflow.id) == []
        member = Signature(task="add", args=[1, 2], id="m1")
        await engine.jobs.extend_chord(workflow.id, [member], chord_id="c")
        assert [job.id for job in await engine.jobs.workflow_jobs(workflow.id)] == ["m1"]
        stored = await engine.jobs.get_workflow(workflow.id)
        assert isinstance(stored.canvas, Chord) and stored.canvas.open

    async def test_a_member_with_a_known_id_is_not_added_twice(self, engine: Engine) -> None:
        workflow = await engine.jobs.submit_canvas(
            Chord(header=[], body=Signature(task="add", args=[0]), id="c", open=True)
        )
        member = Signature(task="add", args=[1, 2], id="m1")
        await engine.jobs.extend_chord(workflow.id, [member], chord_id="c")
        again = await engine.jobs.extend_chord(workflow.id, [member], chord_id="c")
        assert isinstance(again.canvas, Chord) and len(again.canvas.header) == 1
        assert len(await engine.jobs.workflow_jobs(workflow.id)) == 1

    async def test_a_chord_of_an_unknown_task_is_refused(self, engine: Engine) -> None:
        workflow = await engine.jobs.submit_canvas(
            Chord(header=[], body=Signature(task="add", args=[0]), id="c", open=True)
        )
        with pytest.raises(InvalidCanvas):
            await engine.jobs.extend_chord(workflow.id, [Signature(task="nope")], chord_id="c")


class RecordingRepository(InMemoryJobRepository):
    """The memory repository, keeping every commit it was given."""

    def __init__(self) -> None:
        super().__init__()
        self.commits: list[Commit] = []

    async def commit(self, commit: Commit) -> None:
        self.commits.append(commit)
        await super().commit(commit)


class TestCallbacksAreDurable:
    async def test_a_link_is_stored_in_the_commit_that_stores_the_outcome(self) -> None:
        repo = RecordingRepository()
        built = build_engine(repo, FakeClock(), EngineSettings(max_concurrent_tasks=2))
        try:
            job = await built.jobs.submit(Signature(task="add", args=[1, 2], link=[Signature(task="add", args=[10])]))
            done = msgspec.structs.replace(job, state=JobState.SUCCESS, result=3)
            await built.workflows.store(done)
            outcome = repo.commits[-1]  # the one transaction storing the success
            assert outcome.jobs[0] == done
            assert [(j.task, j.args, j.options.parent_id) for j in outcome.jobs[1:]] == [("add", [3, 10], job.id)]
        finally:
            await built.runner.close()
