"""The PostgreSQL project repository: projects in the engine's own database, as SQL on top of its writer."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import asyncpg
import msgspec

from adapters.postgres.job_repository import PostgresJobRepository
from adapters.postgres.rows import INT64
from adapters.postgres.writer import Kind, PostgresWriter
from application.ports.project_repository import ProjectPage, ProjectRepository
from domain.errors import NotFound
from domain.project import Plan, Project, ProjectStatus

_COLUMNS: Final = (
    "id, topic, audience, tone, sections_wanted, status, plan, article, finished, workflow_id, error,"
    " created_at, updated_at, seq"
)
_INSERT: Final = (
    "INSERT INTO projects (id, topic, audience, tone, sections_wanted, status, plan, article, finished,"
    " workflow_id, error, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
)
_INSERT_SECTION: Final = (
    "INSERT INTO project_sections (project_id, section_id, research, draft) VALUES ($1, $2, $3, $4)"
)
_SECTIONS: Final = "SELECT section_id, research, draft FROM project_sections WHERE project_id = $1"
_plan_decoder: Final = msgspec.json.Decoder(Plan)
_encoder: Final = msgspec.json.Encoder()


class PostgresProjectRepository(ProjectRepository):
    """Shares the job repository's database, migrations, group-committing writer and pool.

    Section outputs live one row per (project, section), so research and writing of different
    sections, running in parallel (on any engine), never overwrite each other.
    """

    def __init__(self, database: PostgresJobRepository) -> None:
        self._database = database

    @property
    def _db(self) -> PostgresWriter:
        """The database's writer (looked up on use: a test may stand another repository in for the jobs)."""
        return self._database.writer

    async def create(self, project: Project) -> None:
        await self._execute(
            [
                (
                    _INSERT,
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
                    (_INSERT_SECTION, (project.id, section, project.research.get(section), project.drafts.get(section)))
                    for section in sorted(set(project.research) | set(project.drafts))
                ],
            ]
        )

    async def get(self, project_id: str) -> Project | None:
        rows = await self._db.fetch(f"SELECT {_COLUMNS} FROM projects WHERE id = $1", project_id)
        return await self._project(rows[0]) if rows else None

    async def list_projects(self, *, limit: int, cursor: str | None = None) -> ProjectPage:
        limit = max(limit, 0)
        if cursor:
            before = min(max(int(cursor), INT64.start), INT64.stop - 1)
            sql = f"SELECT {_COLUMNS} FROM projects WHERE seq < $1 ORDER BY seq DESC LIMIT $2"
            rows = await self._db.fetch(sql, before, limit + 1)
        else:
            rows = await self._db.fetch(f"SELECT {_COLUMNS} FROM projects ORDER BY seq DESC LIMIT $1", limit + 1)
        more = len(rows) > limit
        rows = rows[:limit]
        return ProjectPage(
            items=[await self._project(row) for row in rows], next_cursor=str(rows[-1][-1]) if more and rows else None
        )

    async def save_plan(self, project_id: str, plan: Plan, *, now: float) -> None:
        await self._update(
            project_id,
            "UPDATE projects SET plan = $1, article = NULL, finished = NULL, updated_at = $2 WHERE id = $3",
            (_encoder.encode(plan).decode(), now, project_id),
        )

    async def save_research(self, project_id: str, section_id: str, notes: str, *, now: float) -> None:
        await self._save_section(project_id, section_id, "research", notes, now)

    async def save_draft(self, project_id: str, section_id: str, markdown: str, *, now: float) -> None:
        await self._save_section(project_id, section_id, "draft", markdown, now)

    async def save_article(self, project_id: str, markdown: str, *, now: float) -> None:
        await self._update(
            project_id, "UPDATE projects SET article = $1, updated_at = $2 WHERE id = $3", (markdown, now, project_id)
        )

    async def save_finished(self, project_id: str, markdown: str, *, now: float) -> None:
        await self._update(
            project_id, "UPDATE projects SET finished = $1, updated_at = $2 WHERE id = $3", (markdown, now, project_id)
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
            "UPDATE projects SET status = $1, workflow_id = coalesce($2, workflow_id), error = $3, updated_at = $4"
            " WHERE id = $5",
            (str(status), workflow_id, error, now, project_id),
        )

    async def _save_section(self, project_id: str, section_id: str, column: str, text: str, now: float) -> None:
        await self._update(
            project_id,
            "UPDATE projects SET updated_at = $1 WHERE id = $2",
            (now, project_id),
            (
                f"INSERT INTO project_sections (project_id, section_id, {column}) VALUES ($1, $2, $3)"
                f" ON CONFLICT (project_id, section_id) DO UPDATE SET {column} = excluded.{column}",
                (project_id, section_id, text),
            ),
        )

    async def _update(self, project_id: str, sql: str, params: Sequence[Any], *more: tuple[str, Sequence[Any]]) -> None:
        if await self._execute([(sql, params), *more]) == 0:
            raise NotFound("project", project_id)

    async def _execute(self, statements: list[tuple[str, Sequence[Any]]]) -> int:
        self._db.check_open()
        changed: int = await self._db.submit(Kind.EXECUTE, statements)
        return changed

    async def _project(self, row: asyncpg.Record) -> Project:
        sections = await self._db.fetch(_SECTIONS, row[0])
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
