"""Plan merging and article assembly: pure rules of the pipeline."""

from __future__ import annotations

import pytest

from domain.article import MergeStrategy, assemble, merge_plans, section_headings, section_id
from domain.project import Plan, Project, Section


def plan(*titles: str, edited: set[str] | frozenset[str] = frozenset()) -> Plan:
    return Plan(
        title="T",
        sections=[Section(id=section_id(i, t), title=t, brief="", edited=t in edited) for i, t in enumerate(titles)],
    )


def titles(p: Plan) -> list[str]:
    return [section.title for section in p.sections]


class TestMergePlans:
    def test_without_an_existing_plan_the_proposal_is_taken(self) -> None:
        proposed = plan("A", "B")
        for strategy in MergeStrategy:
            assert merge_plans(None, proposed, strategy) == proposed

    def test_replace_takes_the_proposal(self) -> None:
        assert titles(merge_plans(plan("Old", edited={"Old"}), plan("A", "B"), MergeStrategy.REPLACE)) == ["A", "B"]

    def test_keep_keeps_the_existing_plan(self) -> None:
        existing = plan("Mine", "Also mine", edited={"Mine"})
        assert merge_plans(existing, plan("A", "B"), MergeStrategy.KEEP) == existing

    def test_merge_keeps_edited_sections_in_place_and_fills_the_rest(self) -> None:
        existing = plan("Old one", "Mine", "Old three", edited={"Mine"})
        merged = merge_plans(existing, plan("A", "B", "C", "D"), MergeStrategy.MERGE)
        assert titles(merged) == ["A", "Mine", "B", "C", "D"]
        assert merged.sections[1].edited

    def test_merge_does_not_duplicate_a_proposed_section_the_user_already_has(self) -> None:
        existing = plan("Intro", "Mine", edited={"Mine"})
        merged = merge_plans(existing, plan("Intro", "mine", "Outro"), MergeStrategy.MERGE)
        assert titles(merged) == ["Intro", "Mine", "Outro"]


def project_with(p: Plan, drafts: dict[str, str]) -> Project:
    return Project(id="p", topic="t", plan=p, drafts=drafts, created_at=0, updated_at=0)


class TestAssemble:
    def test_sections_come_in_plan_order_each_with_one_heading(self) -> None:
        p = plan("First", "Second", "Third")
        drafts = {s.id: f"Body of {s.title}." for s in reversed(p.sections)}
        article = assemble(project_with(p, drafts))
        assert article.startswith("# T\n")
        assert section_headings(article) == ["First", "Second", "Third"]
        assert article.index("Body of First") < article.index("Body of Second") < article.index("Body of Third")

    def test_a_drafts_own_headings_are_dropped_or_demoted(self) -> None:
        p = plan("Only")
        draft = "## Only\n\nText.\n\n## A sub-part\n\nMore.\n\n# Shouting\n"
        article = assemble(project_with(p, {p.sections[0].id: draft}))
        assert section_headings(article) == ["Only"]
        assert "### A sub-part" in article and "### Shouting" in article

    def test_a_missing_draft_is_refused(self) -> None:
        p = plan("One", "Two")
        with pytest.raises(ValueError, match="no draft yet"):
            assemble(project_with(p, {p.sections[0].id: "x"}))


class TestSectionIds:
    def test_ids_are_stable_readable_slugs(self) -> None:
        assert section_id(0, "Why Queues Matter!") == "s1-why-queues-matter"
        assert section_id(2, "???") == "s3-section"
