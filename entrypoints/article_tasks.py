"""The GeekBlog article pipeline as Celery-style tasks: ``ai.planning`` ... ``ai.full_article_workflow``.

Each task reports progress and delegates to :class:`application.article_pipeline.ArticlePipeline`,
whose stages skip any output already saved, so a workflow run again after a crash does not redo
finished work. The fan-out over the planned sections is built from the plan with ``self.replace``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from domain.article import MergeStrategy
from entrypoints.article_runtime import pipeline
from entrypoints.compat.canvas import chain, chord
from entrypoints.compat.tasks import create_compatible_task

T = TypeVar("T")


async def _stage(task: Any, project_id: str, stage: str, work: Callable[[], Awaitable[T]], **meta: Any) -> T:
    """Run one stage with progress reported; a failure marks the project FAILED before it propagates."""
    await task.update_state(state="PROGRESS", meta={"project_id": project_id, "stage": stage, **meta})
    try:
        return await work()
    except Exception as exc:
        await pipeline().failed(project_id, f"{stage}: {type(exc).__name__}: {exc}")
        raise


@create_compatible_task(name="ai.planning", bind=True)
async def planning(self: Any, project_id: str, strategy: str = "keep") -> list[str]:
    """Plan the article's sections (``strategy``: keep, replace or merge an existing plan); returns their ids."""
    plan = await _stage(self, project_id, "planning", lambda: pipeline().plan(project_id, MergeStrategy(strategy)))
    return [section.id for section in plan.sections]


@create_compatible_task(name="ai.research", bind=True)
async def research(self: Any, project_id: str, section_id: str) -> str:
    """Research one section and save the notes; returns the section id."""
    await _stage(self, project_id, "research", lambda: pipeline().research(project_id, section_id), section=section_id)
    return section_id


@create_compatible_task(name="ai.writing", bind=True)
async def writing(self: Any, project_id: str, section_id: str) -> str:
    """Write one section from its notes and save the draft; returns the section id."""
    await _stage(self, project_id, "writing", lambda: pipeline().write(project_id, section_id), section=section_id)
    return section_id


@create_compatible_task(name="ai.assembly", bind=True)
async def assembly(self: Any, project_id: str) -> int:
    """Assemble every section's draft, in plan order, into one Markdown article; returns its word count."""
    article = await _stage(self, project_id, "assembly", lambda: pipeline().assemble(project_id))
    return len(article.split())


@create_compatible_task(name="ai.finishing", bind=True)
async def finishing(self: Any, project_id: str) -> dict[str, Any]:
    """Edit the assembled article into the finished one; returns the project id and word count."""
    finished = await _stage(self, project_id, "finishing", lambda: pipeline().finish(project_id))
    return {"project_id": project_id, "words": len(finished.split())}


@create_compatible_task(name="ai.sections", bind=True)
async def sections(self: Any, project_id: str) -> None:
    """Fan out over the planned sections: research then writing of each, in parallel, then assembly."""
    plan = await _stage(self, project_id, "sections", lambda: pipeline().begin_sections(project_id))
    per_section = [
        chain(research.si(project_id, section.id), writing.si(project_id, section.id)) for section in plan.sections
    ]
    self.replace(chord(per_section, assembly.si(project_id)))


@create_compatible_task(name="ai.full_article_workflow", bind=True)
def full_article_workflow(self: Any, project_id: str, strategy: str = "keep") -> None:
    """The whole pipeline: planning, the parallel sections, assembly, finishing. Submit it as
    ``application.article_pipeline.article_workflow`` does (``POST /projects/{id}/article``), with
    ``concurrency_key=f"project:{project_id}"``: one project then never runs two of these at once."""
    self.replace(chain(planning.si(project_id, strategy), sections.si(project_id), finishing.si(project_id)))
