"""The in-memory project repository: the same behaviour as SQLite, nothing durable."""

from __future__ import annotations

import itertools
from typing import Any

import msgspec

from application.ports.project_repository import ProjectPage, ProjectRepository
from domain.errors import NotFound
from domain.project import Plan, Project, ProjectStatus


class InMemoryProjectRepository(ProjectRepository):
    """Projects in a dict; each method runs without awaiting, so each is atomic on the loop."""

    def __init__(self) -> None:
        self._projects: dict[str, Project] = {}
        self._seq: dict[str, int] = {}
        self._counter = itertools.count(1)

    async def create(self, project: Project) -> None:
        self._projects[project.id] = project
        self._seq[project.id] = next(self._counter)

    async def get(self, project_id: str) -> Project | None:
        return self._projects.get(project_id)

    async def list_projects(self, *, limit: int, cursor: str | None = None) -> ProjectPage:
        before = int(cursor) if cursor else None
        ordered = sorted(self._projects.values(), key=lambda p: self._seq[p.id], reverse=True)
        items = [p for p in ordered if before is None or self._seq[p.id] < before][: limit + 1]
        more = len(items) > limit
        items = items[:limit]
        return ProjectPage(items=items, next_cursor=str(self._seq[items[-1].id]) if more and items else None)

    async def save_plan(self, project_id: str, plan: Plan, *, now: float) -> None:
        self._change(project_id, now, plan=plan, article=None, finished=None)

    async def save_research(self, project_id: str, section_id: str, notes: str, *, now: float) -> None:
        project = self._require(project_id)
        self._change(project_id, now, research={**project.research, section_id: notes})

    async def save_draft(self, project_id: str, section_id: str, markdown: str, *, now: float) -> None:
        project = self._require(project_id)
        self._change(project_id, now, drafts={**project.drafts, section_id: markdown})

    async def save_article(self, project_id: str, markdown: str, *, now: float) -> None:
        self._change(project_id, now, article=markdown)

    async def save_finished(self, project_id: str, markdown: str, *, now: float) -> None:
        self._change(project_id, now, finished=markdown)

    async def set_status(
        self,
        project_id: str,
        status: ProjectStatus,
        *,
        now: float,
        workflow_id: str | None = None,
        error: str | None = None,
    ) -> None:
        project = self._require(project_id)
        self._change(project_id, now, status=status, workflow_id=workflow_id or project.workflow_id, error=error)

    def _require(self, project_id: str) -> Project:
        project = self._projects.get(project_id)
        if project is None:
            raise NotFound("project", project_id)
        return project

    def _change(self, project_id: str, now: float, **changes: Any) -> None:
        project = self._require(project_id)
        self._projects[project_id] = msgspec.structs.replace(project, updated_at=now, **changes)
