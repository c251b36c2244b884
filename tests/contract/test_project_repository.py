"""The contract every ProjectRepository adapter passes (memory and SQLite)."""

from __future__ import annotations

import asyncio

import pytest

from application.ports.project_repository import ProjectRepository
from domain.errors import NotFound
from domain.project import Plan, Project, ProjectStatus, Section


def project(project_id: str = "p1", **changes: object) -> Project:
    fields: dict[str, object] = {"topic": "Queues", "created_at": 1.0, "updated_at": 1.0}
    fields.update(changes)
    return Project(id=project_id, **fields)  # type: ignore[arg-type]


PLAN = Plan(
    title="A guide",
    sections=[Section(id="s1", title="One", brief="first"), Section(id="s2", title="Two", brief="", edited=True)],
)


class TestCreateAndGet:
    async def test_a_project_round_trips_every_field(self, projects: ProjectRepository) -> None:
        original = project(audience="devs", tone="dry", sections_wanted=7, plan=PLAN, workflow_id="w", error=None)
        await projects.create(original)
        assert await projects.get("p1") == original

    async def test_an_unknown_id_is_none(self, projects: ProjectRepository) -> None:
        assert await projects.get("nope") is None


class TestWrites:
    async def test_plan_research_drafts_and_articles_are_saved(self, projects: ProjectRepository) -> None:
        await projects.create(project())
        await projects.save_plan("p1", PLAN, now=2.0)
        await projects.save_research("p1", "s1", "notes ✓", now=3.0)
        await projects.save_draft("p1", "s1", "draft", now=4.0)
        await projects.save_article("p1", "# A", now=5.0)
        await projects.save_finished("p1", "# A!", now=6.0)
        saved = await projects.get("p1")
        assert saved is not None
        assert saved.plan == PLAN and saved.research == {"s1": "notes ✓"} and saved.drafts == {"s1": "draft"}
        assert saved.article == "# A" and saved.finished == "# A!" and saved.updated_at == 6.0

    async def test_saving_a_plan_clears_the_articles_made_from_the_old_one(self, projects: ProjectRepository) -> None:
        await projects.create(project(article="# old", finished="# old!"))
        await projects.save_plan("p1", PLAN, now=2.0)
        saved = await projects.get("p1")
        assert saved is not None and saved.article is None and saved.finished is None

    async def test_parallel_section_writes_do_not_overwrite_each_other(self, projects: ProjectRepository) -> None:
        await projects.create(project())
        await asyncio.gather(
            *(projects.save_research("p1", f"s{i}", f"notes {i}", now=2.0) for i in range(20)),
            *(projects.save_draft("p1", f"s{i}", f"draft {i}", now=2.0) for i in range(20)),
        )
        saved = await projects.get("p1")
        assert saved is not None
        assert saved.research == {f"s{i}": f"notes {i}" for i in range(20)}
        assert saved.drafts == {f"s{i}": f"draft {i}" for i in range(20)}

    async def test_status_keeps_the_workflow_unless_given_and_replaces_the_error(
        self, projects: ProjectRepository
    ) -> None:
        await projects.create(project())
        await projects.set_status("p1", ProjectStatus.PLANNING, now=2.0, workflow_id="w1")
        await projects.set_status("p1", ProjectStatus.FAILED, now=3.0, error="boom")
        failed = await projects.get("p1")
        assert failed is not None and failed.workflow_id == "w1" and failed.error == "boom"
        await projects.set_status("p1", ProjectStatus.PLANNING, now=4.0, workflow_id="w2")
        again = await projects.get("p1")
        assert again is not None and again.status == ProjectStatus.PLANNING
        assert again.workflow_id == "w2" and again.error is None

    @pytest.mark.parametrize("write", ["plan", "research", "draft", "article", "finished", "status"])
    async def test_writes_to_an_unknown_project_raise_not_found(self, projects: ProjectRepository, write: str) -> None:
        calls = {
            "plan": lambda: projects.save_plan("nope", PLAN, now=1.0),
            "research": lambda: projects.save_research("nope", "s1", "x", now=1.0),
            "draft": lambda: projects.save_draft("nope", "s1", "x", now=1.0),
            "article": lambda: projects.save_article("nope", "x", now=1.0),
            "finished": lambda: projects.save_finished("nope", "x", now=1.0),
            "status": lambda: projects.set_status("nope", ProjectStatus.FAILED, now=1.0),
        }
        with pytest.raises(NotFound):
            await calls[write]()
        assert await projects.get("nope") is None


class TestList:
    async def test_pages_newest_first(self, projects: ProjectRepository) -> None:
        for i in range(5):
            await projects.create(project(f"p{i}"))
        seen: list[str] = []
        cursor = None
        while True:
            page = await projects.list_projects(limit=2, cursor=cursor)
            seen += [p.id for p in page.items]
            cursor = page.next_cursor
            if cursor is None:
                break
        assert seen == ["p4", "p3", "p2", "p1", "p0"]
