"""Pure rules of the article pipeline: merging plans, and assembling sections into one Markdown article."""

from __future__ import annotations

import re
from enum import StrEnum

import msgspec

from domain.project import Plan, Project, Section


class MergeStrategy(StrEnum):
    """What planning does to a project that already has a plan."""

    REPLACE = "replace"  # the new plan wins
    KEEP = "keep"  # the existing (user-edited) plan wins
    MERGE = "merge"  # keep the edited sections, take the rest from the new plan


def merge_plans(existing: Plan | None, proposed: Plan, strategy: MergeStrategy) -> Plan:
    """The plan to save after planning proposed ``proposed``.

    ``merge`` keeps every edited section of the existing plan (in its place relative to the others)
    and replaces the unedited ones with the proposed sections whose titles are new, in proposed order.
    """
    if existing is None or strategy == MergeStrategy.REPLACE:
        return proposed
    if strategy == MergeStrategy.KEEP:
        return existing
    kept = [section for section in existing.sections if section.edited]
    kept_titles = {_normal(section.title) for section in kept}
    kept_ids = {section.id for section in kept}
    fresh = [
        section
        for section in proposed.sections
        if _normal(section.title) not in kept_titles and section.id not in kept_ids
    ]
    merged: list[Section] = []
    fresh_iter = iter(fresh)
    for section in existing.sections:
        if section.edited:
            merged.append(section)
        else:
            replacement = next(fresh_iter, None)
            if replacement is not None:
                merged.append(replacement)
    merged.extend(fresh_iter)
    return msgspec.structs.replace(existing, sections=merged)


def section_id(index: int, title: str) -> str:
    """A stable, readable id for a section: its position and a slug of its title."""
    slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:40] or "section"
    return f"s{index + 1}-{slug}"


def assemble(project: Project) -> str:
    """The article in plan order, with exactly one ``## `` heading per section.

    A draft's own leading heading is dropped (the section title is the heading) and any ``## ``
    heading inside a draft is demoted to ``### `` so the outline stays the plan's.
    """
    if project.plan is None:
        raise ValueError(f"project {project.id} has no plan to assemble")
    missing = [section.id for section in project.plan.sections if section.id not in project.drafts]
    if missing:
        raise ValueError(f"project {project.id} has no draft yet for section(s) {', '.join(missing)}")
    parts = [f"# {project.plan.title}"]
    for section in project.plan.sections:
        parts.append(f"## {section.title}\n\n{_body(project.drafts[section.id])}")
    return "\n\n".join(parts) + "\n"


def _body(draft: str) -> str:
    lines = draft.strip().splitlines()
    while lines and (not lines[0].strip() or lines[0].lstrip().startswith("#")):
        lines.pop(0)
    demoted = [re.sub(r"^#{1,2} ", "### ", line) for line in lines]
    return "\n".join(demoted).strip()


def section_headings(markdown: str) -> list[str]:
    """The ``## `` headings of an article, in order."""
    return [line[3:].strip() for line in markdown.splitlines() if line.startswith("## ")]


def _normal(title: str) -> str:
    return re.sub(r"\s+", " ", title).strip().lower()
