"""Port: where projects and every stage's output are kept."""

from __future__ import annotations

from typing import Protocol

import msgspec

from domain.project import Plan, Project, ProjectStatus


class ProjectPage(msgspec.Struct, frozen=True, kw_only=True):
    """Projects newest first; ``next_cursor`` is None on the last page."""

    items: list[Project]
    next_cursor: str | None = None


class ProjectRepository(Protocol):
    """Projects, with per-section writes so parallel stages never overwrite each other's output.

    Every method is atomic on its own; ``get`` returns None for an unknown id. Writes to an unknown
    project raise ``domain.errors.NotFound``.
    """

    async def create(self, project: Project) -> None: ...

    async def get(self, project_id: str) -> Project | None: ...

    async def list_projects(self, *, limit: int, cursor: str | None = None) -> ProjectPage: ...

    async def save_plan(self, project_id: str, plan: Plan, *, now: float) -> None:
        """Store the plan; the assembled and finished articles are cleared (they followed the old plan)."""
        ...

    async def save_research(self, project_id: str, section_id: str, notes: str, *, now: float) -> None: ...

    async def save_draft(self, project_id: str, section_id: str, markdown: str, *, now: float) -> None: ...

    async def save_article(self, project_id: str, markdown: str, *, now: float) -> None: ...

    async def save_finished(self, project_id: str, markdown: str, *, now: float) -> None: ...

    async def set_status(
        self,
        project_id: str,
        status: ProjectStatus,
        *,
        now: float,
        workflow_id: str | None = None,
        error: str | None = None,
    ) -> None:
        """Set the status; ``workflow_id`` is kept unless a new one is given; ``error`` is replaced."""
        ...
