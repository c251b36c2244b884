"""The workflow planner: what becomes ready, with which args, and when a workflow is done."""

from __future__ import annotations

from typing import Any

import pytest

from domain.canvas import Chain, Chord, Group, Signature, chain_of, node_at, sibling_leaves
from domain.job import ErrorInfo
from domain.planner import LeafOutcome, plan
from domain.states import JobState


def sig(task: str, *args: Any, immutable: bool = False) -> Signature:
    return Signature(task=task, args=list(args), immutable=immutable)


def done(path_task: str, result: Any) -> LeafOutcome:
    return LeafOutcome(job_id=f"id-{path_task}", task=path_task, state=JobState.SUCCESS, result=result)


def failed(task: str) -> LeafOutcome:
    return LeafOutcome(
        job_id=f"id-{task}", task=task, state=JobState.FAILURE, error=ErrorInfo(type="ValueError", message="bad")
    )


def running(task: str) -> LeafOutcome:
    return LeafOutcome(job_id=f"id-{task}", task=task, state=JobState.STARTED)


class TestSignature:
    def test_a_lone_signature_is_ready_at_once_with_its_own_args(self) -> None:
        result = plan(sig("a", 1, 2), {})
        assert [(r.path, r.args) for r in result.ready] == [("", [1, 2])]
        assert not result.finished

    def test_its_success_finishes_the_workflow_with_its_result(self) -> None:
        result = plan(sig("a"), {"": done("a", 7)})
        assert result.state == JobState.SUCCESS and result.result == 7 and result.ready == []


class TestChain:
    canvas = Chain(steps=[sig("a", 1), sig("b", 2), sig("c", immutable=True)])

    def test_only_the_first_step_is_ready_at_first(self) -> None:
        assert [r.path for r in plan(self.canvas, {}).ready] == ["0"]

    def test_a_step_gets_the_previous_result_prepended(self) -> None:
        ready = plan(self.canvas, {"0": done("a", 10)}).ready
        assert [(r.path, r.args) for r in ready] == [("1", [10, 2])]

    def test_an_immutable_step_ignores_it(self) -> None:
        ready = plan(self.canvas, {"0": done("a", 10), "1": done("b", 11)}).ready
        assert [(r.path, r.args) for r in ready] == [("2", [])]

    def test_a_running_step_blocks_the_rest(self) -> None:
        assert plan(self.canvas, {"0": running("a")}).ready == []

    def test_a_failure_fails_the_workflow_with_the_original_error(self) -> None:
        result = plan(self.canvas, {"0": done("a", 1), "1": failed("b")})
        assert result.state == JobState.FAILURE
        assert result.error is not None and result.error.type == "ValueError"
        assert result.ready == []

    def test_the_result_is_the_last_steps(self) -> None:
        outcome = plan(self.canvas, {"0": done("a", 1), "1": done("b", 2), "2": done("c", 3)})
        assert outcome.state == JobState.SUCCESS and outcome.result == 3


class TestGroup:
    canvas = Group(members=[sig("a"), sig("b"), sig("c")])

    def test_all_members_are_ready_at_once(self) -> None:
        assert [r.path for r in plan(self.canvas, {}).ready] == ["0", "1", "2"]

    def test_the_result_is_in_member_order(self) -> None:
        outcome = plan(self.canvas, {"2": done("c", 3), "0": done("a", 1), "1": done("b", 2)})
        assert outcome.result == [1, 2, 3]

    def test_nothing_is_ready_twice(self) -> None:
        assert plan(self.canvas, {"0": running("a"), "1": running("b"), "2": done("c", 1)}).ready == []

    def test_an_empty_group_succeeds_with_an_empty_list(self) -> None:
        outcome = plan(Group(members=[]), {})
        assert outcome.state == JobState.SUCCESS and outcome.result == []


class TestChord:
    canvas = Chord(header=[sig("a"), sig("b")], body=sig("sum"))

    def test_the_body_waits_for_every_header_member(self) -> None:
        assert plan(self.canvas, {"0": done("a", 1), "1": running("b")}).ready == []

    def test_the_body_gets_the_header_results_in_order(self) -> None:
        ready = plan(self.canvas, {"1": done("b", 2), "0": done("a", 1)}).ready
        assert [(r.path, r.args) for r in ready] == [("b", [[1, 2]])]

    def test_a_header_failure_fails_it_with_the_members_own_error(self) -> None:
        # Celery's get() on a chord whose header failed raises that member's exception, not ChordError.
        outcome = plan(self.canvas, {"0": done("a", 1), "1": failed("b")})
        assert outcome.state == JobState.FAILURE and outcome.ready == []
        assert outcome.error is not None and (outcome.error.type, outcome.error.message) == ("ValueError", "bad")
        assert outcome.failed_path == "1"

    def test_a_revoked_member_revokes_the_workflow(self) -> None:
        revoked = LeafOutcome(job_id="x", task="b", state=JobState.REVOKED)
        assert plan(self.canvas, {"0": done("a", 1), "1": revoked}).state == JobState.REVOKED


class TestNesting:
    def test_a_group_of_chains_advances_each_chain_on_its_own(self) -> None:
        canvas = Group(members=[Chain(steps=[sig("a"), sig("b")]), Chain(steps=[sig("c"), sig("d")])])
        ready = plan(canvas, {"0.0": done("a", 5), "1.0": running("c")}).ready
        assert [(r.path, r.args) for r in ready] == [("0.1", [5])]

    def test_a_chain_passes_its_input_into_a_nested_group(self) -> None:
        canvas = Chain(steps=[sig("a"), Group(members=[sig("b"), sig("c", 1)])])
        ready = plan(canvas, {"0": done("a", 9)}).ready
        assert [(r.path, r.args) for r in ready] == [("1.0", [9]), ("1.1", [9, 1])]


class TestChainOf:
    def test_a_group_followed_by_a_step_becomes_a_chord(self) -> None:
        built = chain_of([sig("a"), Group(members=[sig("b")]), sig("c")])
        assert built == Chain(steps=[sig("a"), Chord(header=[sig("b")], body=sig("c"))])

    def test_a_single_step_is_itself(self) -> None:
        assert chain_of([sig("a")]) == sig("a")


class TestNodePaths:
    canvas = Chain(
        steps=[
            sig("a"),
            Chord(header=[sig("b"), sig("c")], body=sig("d")),
            Group(members=[sig("e"), Chain(steps=[sig("f")])]),
        ]
    )

    def test_node_at_follows_the_paths_the_planner_uses(self) -> None:
        assert node_at(self.canvas, "1.b") == sig("d")
        assert node_at(self.canvas, "2.1.0") == sig("f")
        assert node_at(self.canvas, "") == self.canvas

    def test_an_unknown_path_is_a_key_error(self) -> None:
        with pytest.raises(KeyError):
            node_at(self.canvas, "7")

    def test_siblings_are_given_only_for_groups_of_plain_signatures(self) -> None:
        assert sibling_leaves(self.canvas, "1.0") == ["1.0", "1.1"]
        assert sibling_leaves(self.canvas, "1.b") is None, "a chord body has no siblings"
        assert sibling_leaves(self.canvas, "2.0") is None, "the group has a chain member"
        assert sibling_leaves(self.canvas, "0") is None, "a chain step unblocks the next step"
