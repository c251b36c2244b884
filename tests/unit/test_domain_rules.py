"""Job transitions, canvas limits, the JSON rule and the retry delays."""

from __future__ import annotations

import math

import pytest

from domain.canvas import Chain, Group, Signature, validate
from domain.errors import InvalidCanvas, InvalidTransition, NotJsonValue
from domain.job import ErrorInfo, Job
from domain.json_values import ensure_json
from domain.retry_policy import RetryPolicy
from domain.states import JobState, can_transition


def job(**changes: object) -> Job:
    return Job(id="j", task="t", due_at=0.0, created_at=0.0, **changes)  # type: ignore[arg-type]


class TestTransitions:
    def test_a_claim_starts_the_job_and_counts_the_attempt(self) -> None:
        started = job().started(owner="me", now=5.0, lease_until=65.0)
        assert started.state == JobState.STARTED and started.attempts == 1
        assert started.lease_owner == "me" and started.retries == 0

    def test_a_finished_job_cannot_start_again(self) -> None:
        finished = job().started(owner="me", now=1, lease_until=2).succeeded(1, now=2)
        with pytest.raises(InvalidTransition):
            finished.started(owner="me", now=3, lease_until=4)

    def test_success_is_final(self) -> None:
        assert not any(can_transition(JobState.SUCCESS, target) for target in JobState)

    def test_finishing_drops_the_lease(self) -> None:
        failed = job().started(owner="me", now=1, lease_until=2).failed(ErrorInfo(type="E", message="m"), now=2)
        assert failed.lease_owner is None and failed.finished_at == 2

    def test_a_failed_job_may_be_requeued(self) -> None:
        failed = job().started(owner="me", now=1, lease_until=2).failed(ErrorInfo(type="E", message="m"), now=2)
        assert failed.requeued(now=3).state == JobState.PENDING


class TestCanvasLimits:
    def test_too_deep_is_refused(self) -> None:
        canvas: Signature | Chain = Signature(task="a")
        for _ in range(40):
            canvas = Chain(steps=[canvas])
        with pytest.raises(InvalidCanvas, match="deeper"):
            validate(canvas)

    def test_too_many_nodes_is_refused(self) -> None:
        with pytest.raises(InvalidCanvas, match="more than"):
            validate(Group(members=[Signature(task="a")] * 50), max_nodes=10)

    def test_an_empty_chain_is_refused(self) -> None:
        with pytest.raises(InvalidCanvas):
            validate(Chain(steps=[]))

    def test_non_json_args_are_refused(self) -> None:
        with pytest.raises(NotJsonValue):
            validate(Signature(task="a", args=[{1, 2}]))


class TestJsonRule:
    @pytest.mark.parametrize("value", [None, 1, 1.5, "x", True, [1, [2]], {"a": {"b": [None]}}, (1, 2)])
    def test_plain_json_passes(self, value: object) -> None:
        ensure_json(value, "v")

    @pytest.mark.parametrize("value", [{1, 2}, b"x", object(), {1: "a"}, math.nan, math.inf, [1, {2: 3}]])
    def test_anything_else_is_a_type_error_naming_where(self, value: object) -> None:
        with pytest.raises(TypeError, match=r"^v"):
            ensure_json(value, "v")


class TestRetryPolicy:
    def test_default_delay_is_celerys(self) -> None:
        assert RetryPolicy().delay(0) == 180.0

    def test_an_explicit_countdown_wins(self) -> None:
        assert RetryPolicy().delay(3, countdown=2.5) == 2.5

    def test_backoff_doubles_up_to_the_cap(self) -> None:
        policy = RetryPolicy(retry_backoff=True, retry_jitter=False, retry_backoff_max=10)
        assert [policy.delay(n) for n in range(5)] == [1, 2, 4, 8, 10]

    def test_jitter_scales_the_delay_down(self) -> None:
        policy = RetryPolicy(retry_backoff=2, retry_jitter=True)
        assert policy.delay(2, random_fraction=0.5) == 4.0
