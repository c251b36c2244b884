"""The article pipeline's stages on fakes: what each saves, what it skips, how failures show."""

from __future__ import annotations

import msgspec
import pytest

from adapters.event_bus import InProcessEventBus
from adapters.memory_job_repository import InMemoryJobRepository
from adapters.memory_project_repository import InMemoryProjectRepository
from adapters.offline_text_generator import OfflineTextGenerator
from application.article_pipeline import ArticlePipeline, _parse_plan
from application.ports import Commit
from application.ports.text_generator import GenerationFailed, GenerationRequest, TextGenerator
from domain.article import MergeStrategy, section_headings
from domain.canvas import Signature
from domain.job import ErrorInfo
from domain.project import ProjectStatus
from domain.states import JobState
from domain.workflow import Workflow
from tests.unit.fakes import CountingIds, FakeClock


class CountingGenerator(TextGenerator):
    """The offline generator, counting calls per stage; ``finish_with`` overrides the finishing answer."""

    name = "counting"

    def __init__(self, finish_with: str | None = None) -> None:
        self.calls: list[tuple[str, str]] = []
        self._inner = OfflineTextGenerator()
        self._finish_with = finish_with

    async def generate(self, request: GenerationRequest) -> str:
        self.calls.append((request.stage, request.inputs.get("section", "")))
        if request.stage == "finishing" and self._finish_with is not None:
            return self._finish_with
        return await self._inner.generate(request)

    async def close(self) -> None:
        return None


@pytest.fixture
def generator() -> CountingGenerator:
    return CountingGenerator()


@pytest.fixture
def pipeline(generator: CountingGenerator) -> ArticlePipeline:
    return build_pipeline(generator)


def build_pipeline(generator: TextGenerator, workflows: InMemoryJobRepository | None = None) -> ArticlePipeline:
    return ArticlePipeline(
        projects=InMemoryProjectRepository(),
        generator=generator,
        bus=InProcessEventBus(),
        clock=FakeClock(),
        ids=CountingIds(),
        workflows=workflows,
    )


async def write_all(pipeline: ArticlePipeline, project_id: str) -> str:
    plan = await pipeline.plan(project_id)
    for section in plan.sections:
        await pipeline.research(project_id, section.id)
        await pipeline.write(project_id, section.id)
    await pipeline.assemble(project_id)
    return await pipeline.finish(project_id)


class TestStages:
    async def test_every_stage_saves_its_output_and_the_project_ends_finished(self, pipeline: ArticlePipeline) -> None:
        project = await pipeline.create("Queues", audience="devs", tone=None, sections=3)
        finished = await write_all(pipeline, project.id)
        saved = await pipeline.get(project.id)
        assert saved.status == ProjectStatus.FINISHED
        assert saved.plan is not None and len(saved.plan.sections) == 3
        assert set(saved.research) == set(saved.drafts) == {s.id for s in saved.plan.sections}
        assert saved.article is not None and saved.finished == finished
        assert section_headings(finished) == [s.title for s in saved.plan.sections]

    async def test_a_stage_with_saved_output_is_not_redone(
        self, pipeline: ArticlePipeline, generator: CountingGenerator
    ) -> None:
        project = await pipeline.create("Queues", audience=None, tone=None, sections=2)
        await write_all(pipeline, project.id)
        calls = len(generator.calls)
        await write_all(pipeline, project.id)
        assert len(generator.calls) == calls
        assert [stage for stage, _ in generator.calls].count("research") == 2

    async def test_replanning_with_replace_clears_the_assembled_article(self, pipeline: ArticlePipeline) -> None:
        project = await pipeline.create("Queues", audience=None, tone=None, sections=2)
        await write_all(pipeline, project.id)
        await pipeline.edit_plan(project.id, "Mine", [(None, "Only mine", "brief")])
        await pipeline.plan(project.id, MergeStrategy.REPLACE)
        saved = await pipeline.get(project.id)
        assert saved.article is None and saved.finished is None
        assert saved.plan is not None and saved.plan.sections[0].title == "Why Queues matters"

    async def test_an_edited_plan_is_kept_by_default(
        self, pipeline: ArticlePipeline, generator: CountingGenerator
    ) -> None:
        project = await pipeline.create("Queues", audience=None, tone=None, sections=4)
        await pipeline.edit_plan(project.id, "Mine", [(None, "One", "b"), ("custom", "Two", "b")])
        plan = await pipeline.plan(project.id)
        assert [s.id for s in plan.sections] == ["s1-one", "custom"]
        assert not any(stage == "planning" for stage, _ in generator.calls)

    async def test_a_finishing_answer_that_breaks_the_outline_is_not_used(self) -> None:
        generator = CountingGenerator(finish_with="# Title\n\n## Something else entirely\n")
        pipeline = build_pipeline(generator)
        project = await pipeline.create("Queues", audience=None, tone=None, sections=2)
        finished = await write_all(pipeline, project.id)
        saved = await pipeline.get(project.id)
        assert finished == saved.article

    async def test_a_failure_marks_the_project_failed(self, pipeline: ArticlePipeline) -> None:
        project = await pipeline.create("Queues", audience=None, tone=None, sections=2)
        await pipeline.failed(project.id, "research: GenerationFailed: down")
        saved = await pipeline.get(project.id)
        assert saved.status == ProjectStatus.FAILED and saved.error == "research: GenerationFailed: down"

    @pytest.mark.parametrize(("topic", "sections"), [("", 3), ("Queues", 0), ("Queues", 13)])
    async def test_bad_projects_are_refused(self, pipeline: ArticlePipeline, topic: str, sections: int) -> None:
        with pytest.raises(ValueError, match=r"topic|sections"):
            await pipeline.create(topic, audience=None, tone=None, sections=sections)


class TestParsePlan:
    def test_json(self) -> None:
        text = msgspec.json.encode({"title": "X", "sections": [{"title": "A", "brief": "a"}, {"title": "B"}]}).decode()
        parsed = _parse_plan(text, 2)
        assert parsed.title == "X" and [(s.title, s.brief) for s in parsed.sections] == [("A", "a"), ("B", "")]

    def test_json_in_a_fence(self) -> None:
        parsed = _parse_plan('```json\n{"title": "X", "sections": [{"title": "A"}]}\n```', 1)
        assert [s.title for s in parsed.sections] == ["A"]

    def test_a_markdown_list_is_understood_too(self) -> None:
        parsed = _parse_plan("# Guide\n\n1. Intro: why\n2. Details: how\n- Outro", 3)
        assert parsed.title == "Guide"
        assert [(s.title, s.brief) for s in parsed.sections] == [("Intro", "why"), ("Details", "how"), ("Outro", "")]

    def test_no_sections_is_a_generation_failure(self) -> None:
        with pytest.raises(GenerationFailed, match="no sections"):
            _parse_plan("I cannot help with that.", 3)


class TestReconcile:
    async def test_a_project_whose_workflow_failed_outside_its_stages_reads_as_failed(self) -> None:
        jobs = InMemoryJobRepository()
        pipeline = build_pipeline(CountingGenerator(), jobs)
        project = await pipeline.create("Queues", audience=None, tone=None, sections=2)
        lost = Workflow(
            id="w1",
            canvas=Signature(task="ai.full_article_workflow"),
            state=JobState.FAILURE,
            error=ErrorInfo(type="WorkerLostError", message="worker lost while running job j (ai.research)"),
            created_at=0.0,
            finished_at=1.0,
        )
        await jobs.commit(Commit(workflows=[lost]))
        await pipeline.started(project.id, "w1")
        failed = await pipeline.get(project.id)
        assert failed.status == ProjectStatus.FAILED
        assert failed.error is not None and "WorkerLostError" not in failed.error and "worker lost" in failed.error

    async def test_a_running_workflow_leaves_the_project_as_it_is(self) -> None:
        jobs = InMemoryJobRepository()
        pipeline = build_pipeline(CountingGenerator(), jobs)
        project = await pipeline.create("Queues", audience=None, tone=None, sections=2)
        running = Workflow(id="w1", canvas=Signature(task="ai.full_article_workflow"), created_at=0.0)
        await jobs.commit(Commit(workflows=[running]))
        await pipeline.started(project.id, "w1")
        assert (await pipeline.get(project.id)).status == ProjectStatus.PLANNING
