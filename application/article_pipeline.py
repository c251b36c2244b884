"""The GeekBlog article pipeline's use cases: plan, research and write each section, assemble, finish.

Each stage first looks at what the project already holds and returns that instead of redoing it,
so a workflow run again after a crash picks up where it stopped. Each stage reports what it does on
the event bus under the project's id (``kind="project"``), which the project's event stream follows.
"""

from __future__ import annotations

import msgspec

from application.events import Event
from application.ports import Clock, EventBus, IdSource, JobStore
from application.ports.project_repository import ProjectPage, ProjectRepository
from application.ports.text_generator import GenerationFailed, GenerationRequest, TextGenerator
from domain.article import MergeStrategy, assemble, merge_plans, section_headings, section_id
from domain.canvas import Signature
from domain.errors import NotFound
from domain.job import Progress
from domain.project import Plan, Project, ProjectStatus, Section
from domain.states import JobState, is_terminal

MAX_SECTIONS = 12
ORCHESTRATOR = "ai.full_article_workflow"
"""The task that runs a project's whole article workflow (``entrypoints.article_tasks``)."""


def project_key(project_id: str) -> str:
    """The concurrency key of a project's article workflows: one runs at a time, a second one waits."""
    return f"project:{project_id}"


def article_workflow(project_id: str, strategy: MergeStrategy) -> Signature:
    """The call that runs a project's article workflow. Its concurrency key (:func:`project_key`, limit 1) is
    held from its start until the workflow it replaces itself with has finished, so one project never runs
    two article workflows at once, on any engine: a second one waits queued for the first to end."""
    return Signature(task=ORCHESTRATOR, args=[project_id, strategy.value], concurrency_key=project_key(project_id))


_SETTLED = frozenset({ProjectStatus.NEW, ProjectStatus.FINISHED, ProjectStatus.FAILED})


class PlanDraft(msgspec.Struct):
    """What the planning stage must return: a title and sections with a brief each."""

    title: str
    sections: list[SectionDraft]


class SectionDraft(msgspec.Struct):
    title: str
    brief: str = ""


class ArticlePipeline:
    """Every stage of writing an article for a project, each idempotent on saved output."""

    def __init__(
        self,
        *,
        projects: ProjectRepository,
        generator: TextGenerator,
        bus: EventBus,
        clock: Clock,
        ids: IdSource,
        workflows: JobStore | None = None,
    ) -> None:
        self._projects = projects
        self._workflows = workflows
        self._generator = generator
        self._bus = bus
        self._clock = clock
        self._ids = ids

    async def create(self, topic: str, *, audience: str | None, tone: str | None, sections: int | None) -> Project:
        now = self._clock.now()
        project = Project(
            id=self._ids.new_id(),
            topic=topic.strip(),
            audience=(audience or "").strip() or "general readers",
            tone=(tone or "").strip() or "friendly and precise",
            sections_wanted=5 if sections is None else sections,
            created_at=now,
            updated_at=now,
        )
        if not project.topic:
            raise ValueError("the topic must not be empty")
        if not 1 <= project.sections_wanted <= MAX_SECTIONS:
            raise ValueError(f"sections must be between 1 and {MAX_SECTIONS}")
        await self._projects.create(project)
        return project

    async def get(self, project_id: str) -> Project:
        project = await self._projects.get(project_id)
        if project is None:
            raise NotFound("project", project_id)
        return await self._reconciled(project)

    async def _reconciled(self, project: Project) -> Project:
        """A project whose workflow ended without its stages saying so (a job lost to crashes past
        its attempts, a revoked workflow) is FAILED with the workflow's error, not left in progress."""
        if self._workflows is None or project.workflow_id is None or project.status in _SETTLED:
            return project
        workflow = await self._workflows.get_workflow(project.workflow_id)
        if workflow is None or not is_terminal(workflow.state) or workflow.state == JobState.SUCCESS:
            return project
        reason = workflow.error.message if workflow.error else f"workflow {workflow.id} is {workflow.state}"
        await self.failed(project.id, f"workflow {workflow.state.value}: {reason}")
        refreshed = await self._projects.get(project.id)
        return refreshed or project

    async def list_projects(self, *, limit: int = 50, cursor: str | None = None) -> ProjectPage:
        return await self._projects.list_projects(limit=limit, cursor=cursor)

    async def started(self, project_id: str, workflow_id: str) -> None:
        await self.get(project_id)
        await self._projects.set_status(
            project_id, ProjectStatus.PLANNING, now=self._clock.now(), workflow_id=workflow_id
        )
        self._publish(project_id, ProjectStatus.PLANNING.value, {"stage": "queued", "workflow_id": workflow_id})

    async def edit_plan(self, project_id: str, title: str, sections: list[tuple[str | None, str, str]]) -> Plan:
        """The user's own plan: every section in it is marked edited, so ``keep``/``merge`` keep it."""
        await self.get(project_id)
        plan = Plan(
            title=title,
            sections=[
                Section(id=ident or section_id(index, heading), title=heading, brief=brief, edited=True)
                for index, (ident, heading, brief) in enumerate(sections)
            ],
        )
        await self._projects.save_plan(project_id, plan, now=self._clock.now())
        return plan

    async def plan(self, project_id: str, strategy: MergeStrategy = MergeStrategy.KEEP) -> Plan:
        project = await self.get(project_id)
        if project.plan is not None and strategy == MergeStrategy.KEEP:
            return await self._planned(project_id, project.plan)
        self._publish(project_id, "PLANNING", {"stage": "planning"})
        text = await self._generator.generate(
            GenerationRequest(
                stage="planning",
                system="You plan blog articles. Answer with JSON only: "
                '{"title": str, "sections": [{"title": str, "brief": str}]}',
                prompt=(
                    f"Plan an article about {project.topic!r} for {project.audience}, in a {project.tone} tone, "
                    f"with exactly {project.sections_wanted} sections. Each brief says what the section covers."
                ),
                inputs={"topic": project.topic, "audience": project.audience, "sections": str(project.sections_wanted)},
                json_output=True,
            )
        )
        proposed = _parse_plan(text, project.sections_wanted)
        plan = merge_plans(project.plan, proposed, strategy)
        if plan != project.plan:
            await self._projects.save_plan(project_id, plan, now=self._clock.now())
        return await self._planned(project_id, plan)

    async def _planned(self, project_id: str, plan: Plan) -> Plan:
        await self._projects.set_status(project_id, ProjectStatus.PLANNED, now=self._clock.now())
        sections = {"sections": [s.title for s in plan.sections], "section_ids": [s.id for s in plan.sections]}
        self._publish(project_id, "PLANNED", {"stage": "planning", **sections})
        return plan

    async def begin_sections(self, project_id: str) -> Plan:
        """The parallel stage starts: the project is WRITING; returns the plan to fan out over."""
        project = await self.get(project_id)
        if project.plan is None:
            raise ValueError(f"project {project_id} has no plan to write")
        await self._projects.set_status(project_id, ProjectStatus.WRITING, now=self._clock.now())
        self._publish(project_id, "WRITING", {"stage": "sections", "sections": len(project.plan.sections)})
        return project.plan

    async def research(self, project_id: str, section_id: str) -> str:
        project = await self.get(project_id)
        if section_id in project.research:
            return project.research[section_id]
        section = project.section(section_id)
        self._publish(project_id, "WRITING", {"stage": "research", "section": section.title, "section_id": section_id})
        notes = await self._generator.generate(
            GenerationRequest(
                stage="research",
                system="You research one section of a blog article. Answer with Markdown bullet notes.",
                prompt=(
                    f"Article: {project.topic!r} for {project.audience}. Section: {section.title!r}: {section.brief} "
                    "List the key points, one concrete example, and one caveat."
                ),
                inputs=_section_inputs(project, section),
            )
        )
        await self._projects.save_research(project_id, section_id, notes.strip(), now=self._clock.now())
        done = {"stage": "research", "section": section.title, "section_id": section_id, "done": True}
        self._publish(project_id, "WRITING", done)
        return notes

    async def write(self, project_id: str, section_id: str) -> str:
        project = await self.get(project_id)
        if section_id in project.drafts:
            return project.drafts[section_id]
        section = project.section(section_id)
        notes = project.research.get(section_id) or await self.research(project_id, section_id)
        self._publish(project_id, "WRITING", {"stage": "writing", "section": section.title, "section_id": section_id})
        draft = await self._generator.generate(
            GenerationRequest(
                stage="writing",
                system="You write one section of a blog article in Markdown, without a heading.",
                prompt=(
                    f"Article: {project.topic!r} for {project.audience}, tone: {project.tone}. "
                    f"Write the section {section.title!r} ({section.brief}) from these notes:\n{notes}"
                ),
                inputs={**_section_inputs(project, section), "notes": notes},
            )
        )
        await self._projects.save_draft(project_id, section_id, draft.strip(), now=self._clock.now())
        done = {"stage": "writing", "section": section.title, "section_id": section_id, "done": True}
        self._publish(project_id, "WRITING", done)
        return draft

    async def assemble(self, project_id: str) -> str:
        project = await self.get(project_id)
        article = project.article
        if article is None:
            article = assemble(project)
            await self._projects.save_article(project_id, article, now=self._clock.now())
        await self._projects.set_status(project_id, ProjectStatus.ASSEMBLED, now=self._clock.now())
        self._publish(project_id, "ASSEMBLED", {"stage": "assembly", "words": len(article.split())})
        return article

    async def finish(self, project_id: str) -> str:
        project = await self.get(project_id)
        if project.finished is not None:
            return await self._finished(project_id, project.finished)
        article = project.article or await self.assemble(project_id)
        self._publish(project_id, "FINISHING", {"stage": "finishing"})
        finished = await self._generator.generate(
            GenerationRequest(
                stage="finishing",
                system="You edit a Markdown blog article: tighten the prose, add a short summary under the "
                "title. Keep every '## ' heading exactly as it is and add no other '## ' heading.",
                prompt=article,
                inputs={"article": article, "topic": project.topic, "audience": project.audience},
                max_tokens=4000,
            )
        )
        if section_headings(finished) != section_headings(article):
            finished = article  # the editor broke the outline: keep the assembled article
        await self._projects.save_finished(project_id, finished, now=self._clock.now())
        return await self._finished(project_id, finished)

    async def _finished(self, project_id: str, finished: str) -> str:
        await self._projects.set_status(project_id, ProjectStatus.FINISHED, now=self._clock.now())
        self._publish(project_id, "FINISHED", {"stage": "finishing", "words": len(finished.split())})
        return finished

    async def failed(self, project_id: str, error: str) -> None:
        await self._projects.set_status(project_id, ProjectStatus.FAILED, now=self._clock.now(), error=error)
        self._publish(project_id, "FAILED", {"stage": "failed", "error": error})

    def _publish(self, project_id: str, state: str, meta: dict[str, object]) -> None:
        self._bus.publish(
            Event(
                kind="project",
                id=project_id,
                state=state,
                at=self._clock.now(),
                progress=Progress(state=state, meta=meta),
            )
        )


def _section_inputs(project: Project, section: Section) -> dict[str, str]:
    return {
        "topic": project.topic,
        "audience": project.audience,
        "tone": project.tone,
        "section": section.title,
        "brief": section.brief,
    }


def _parse_plan(text: str, wanted: int) -> Plan:
    """The plan in a generator's answer: JSON (also inside a ```json fence), else a Markdown list."""
    body = text.strip()
    if body.startswith("```"):
        body = body.strip("`").removeprefix("json").strip()
    try:
        draft = msgspec.json.decode(body, type=PlanDraft)
        title, entries = draft.title, [(s.title, s.brief) for s in draft.sections]
    except (msgspec.DecodeError, msgspec.ValidationError):
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        items = [line.lstrip("-*0123456789.) ").strip() for line in lines if line[:1] in "-*" or line[:1].isdigit()]
        title = next((line.lstrip("# ") for line in lines if line.startswith("#")), "Untitled article")
        entries = [
            (item.split(":", 1)[0].strip(), item.split(":", 1)[1].strip() if ":" in item else "") for item in items
        ]
    entries = [(heading, brief) for heading, brief in entries if heading][:MAX_SECTIONS]
    if not entries:
        raise GenerationFailed(f"planning: no sections found in the generator's answer: {text[:200]!r}")
    del wanted  # the generator was asked for this many; whatever it planned is used
    sections = [
        Section(id=section_id(index, heading), title=heading, brief=brief)
        for index, (heading, brief) in enumerate(entries)
    ]
    return Plan(title=title.strip() or "Untitled article", sections=sections)
