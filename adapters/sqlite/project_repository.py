"""The SQLite project repository: projects in the engine's own database file, as SQL on top of its writer."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import msgspec

from adapters.sqlite.job_repository import SqliteJobRepository
from adapters.sqlite.writer import SqliteWriter
from application.ports.project_repository import ProjectPage, ProjectRepository
from domain.errors import NotFound
from domain.project import Plan, Project, ProjectStatus

_COLUMNS: Final = (
    "id, topic, audience, tone, sections_wanted, status, plan, article, finished, workflow_id, error,"
    " created_at, updated_at, seq"
)
_plan_decoder: Final = msgspec.json.Decoder(Plan)
_encoder: Final = msgspec.json.Encoder()


class SqliteProjectRepository(ProjectRepository):
    """Shares the job repository's file, migrations, group-committing writer and reader connection.

    Section outputs live one row per (project, section), so research and writing of different
    sections, running in parallel, never overwrite each other.
    """

    def __init__(self, database: SqliteJobRepository) -> None:
        self._database = database

    @property
    def _db(self) -> SqliteWriter:
        """The database's writer (looked up on use: a test may stand another repository in for the jobs)."""
        return self._database.writer

    async def create(self, project: Project) -> None:
        await self._db.execute(
            [
                (
                    "INSERT INTO projects (id, topic, audience, tone, sections_wanted, status, plan, article, finished,"
                    " workflow_id, error, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        project.id,
                        project.topic,
                        project.audience,
                        project.tone,
                        project.sections_wanted,
                        str(project.status),
                        None if project.plan is None else _encoder.encode(project.plan).decode(),
                        project.article,
                        project.finished,
                        project.workflow_id,
                        project.error,
                        project.created_at,
                        project.updated_at,
                    ),
                ),
                *[
                    (
                        "INSERT INTO project_sections (project_id, section_id, research, draft) VALUES (?, ?, ?, ?)",
                        (project.id, section, project.research.get(section), project.drafts.get(section)),
                    )
                    for section in sorted(set(project.research) | set(project.drafts))
                ],
            ]
        )

    async def get(self, project_id: str) -> Project | None:
        rows = self._db.read(f"SELECT {_COLUMNS} FROM projects WHERE id = ?", (project_id,))
        return self._project(rows[0]) if rows else None

    async def list_projects(self, *, limit: int, cursor: str | None = None) -> ProjectPage:
        where, params = ("WHERE seq < ?", [int(cursor)]) if cursor else ("", [])
        rows = self._db.read(f"SELECT {_COLUMNS} FROM projects {where} ORDER BY seq DESC LIMIT ?", [*params, limit + 1])
        more = len(rows) > limit
        rows = rows[:limit]
        return ProjectPage(
            items=[self._project(row) for row in rows], next_cursor=str(rows[-1][-1]) if more and rows else None
        )

    async def save_plan(self, project_id: str, plan: Plan, *, now: float) -> None:
        await self._update(
            project_id,
            "UPDATE projects SET plan = ?, article = NULL, finished = NULL, updated_at = ? WHERE id = ?",
            (_encoder.encode(plan).decode(), now, project_id),
        )

    async def save_research(self, project_id: str, section_id: str, notes: str, *, now: float) -> None:
        await self._save_section(project_id, section_id, "research", notes, now)

    async def save_draft(self, project_id: str, section_id: str, markdown: str, *, now: float) -> None:
        await self._save_section(project_id, section_id, "draft", markdown, now)

    async def save_article(self, project_id: str, markdown: str, *, now: float) -> None:
        await self._update(
            project_id, "UPDATE projects SET article = ?, updated_at = ? WHERE id = ?", (markdown, now, project_id)
        )

    async def save_finished(self, project_id: str, markdown: str, *, now: float) -> None:
        await self._update(
            project_id, "UPDATE projects SET finished = ?, updated_at = ? WHERE id = ?", (markdown, now, project_id)
        )

    async def set_status(
        self,
        project_id: str,
        status: ProjectStatus,
        *,
        now: float,
        workflow_id: str | None = None,
        error: str | None = None,
    ) -> None:
        await self._update(
            project_id,
            "UPDATE projects SET status = ?, workflow_id = coalesce(?, workflow_id), error = ?, updated_at = ?"
            " WHERE id = ?",
            (str(status), workflow_id, error, now, project_id),
        )

    async def _save_section(self, project_id: str, section_id: str, column: str, text: str, now: float) -> None:
        await self._update(
            project_id,
            "UPDATE projects SET updated_at = ? WHERE id = ?",
            (now, project_id),
            (
                f"INSERT INTO project_sections (project_id, section_id, {column}) VALUES (?, ?, ?)"
                f" ON CONFLICT (project_id, section_id) DO UPDATE SET {column} = excluded.{column}",
                (project_id, section_id, text),
            ),
        )

    async def _update(self, project_id: str, sql: str, params: Sequence[Any], *more: tuple[str, Sequence[Any]]) -> None:
        if await self._db.execute([(sql, params), *more]) == 0:
            raise NotFound("project", project_id)

    def _project(self, row: Sequence[Any]) -> Project:
        sections = self._db.read(
            "SELECT section_id, research, draft FROM project_sections WHERE project_id = ?", (row[0],)
        )
        return Project(
            id=row[0],
            topic=row[1],
            audience=row[2],
            tone=row[3],
            sections_wanted=row[4],
            status=ProjectStatus(row[5]),
            plan=None if row[6] is None else _plan_decoder.decode(row[6]),
            article=row[7],
            finished=row[8],
            workflow_id=row[9],
            error=row[10],
            created_at=row[11],
            updated_at=row[12],
            research={section: research for section, research, _ in sections if research is not None},
            drafts={section: draft for section, _, draft in sections if draft is not None},
        )
