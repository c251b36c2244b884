"""A GeekBlog project: an article to write, and what each stage of the pipeline produced for it."""

from __future__ import annotations

from enum import StrEnum

import msgspec


class ProjectStatus(StrEnum):
    """Where the article pipeline is for a project."""

    NEW = "NEW"
    PLANNING = "PLANNING"
    PLANNED = "PLANNED"
    WRITING = "WRITING"
    ASSEMBLED = "ASSEMBLED"
    FINISHED = "FINISHED"
    FAILED = "FAILED"


class Section(msgspec.Struct, frozen=True, kw_only=True):
    """One planned section. ``edited`` marks a section the user changed: merging plans keeps it."""

    id: str
    title: str
    brief: str
    edited: bool = False


class Plan(msgspec.Struct, frozen=True, kw_only=True):
    """The article's outline: its title and sections in reading order."""

    title: str
    sections: list[Section]


class Project(msgspec.Struct, frozen=True, kw_only=True):
    """A topic to write about, for whom and how, and every stage's saved output.

    ``research`` and ``drafts`` are keyed by section id; ``article`` is the assembled Markdown and
    ``finished`` the final one. A stage whose output is saved here is not redone.
    """

    id: str
    topic: str
    audience: str = "general readers"
    tone: str = "friendly and precise"
    sections_wanted: int = 5
    status: ProjectStatus = ProjectStatus.NEW
    plan: Plan | None = None
    research: dict[str, str] = msgspec.field(default_factory=dict)
    drafts: dict[str, str] = msgspec.field(default_factory=dict)
    article: str | None = None
    finished: str | None = None
    workflow_id: str | None = None
    error: str | None = None
    created_at: float
    updated_at: float

    def section(self, section_id: str) -> Section:
        """The planned section with this id (KeyError if the plan has none)."""
        for section in self.plan.sections if self.plan else []:
            if section.id == section_id:
                return section
        raise KeyError(f"project {self.id} has no planned section {section_id!r}")
