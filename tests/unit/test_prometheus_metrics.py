"""The metrics adapter on events it is told: the exposition, parsed as a scraper parses it."""

from __future__ import annotations

from adapters.prometheus_metrics import PrometheusMetrics
from application.events import Event
from tests.support.metrics import samples, types, value


def job_event(state: str, *, at: float, attempts: int = 0, started_at: float | None = None, **more: object) -> Event:
    return Event(
        kind="job", id="j1", state=state, at=at, task="t.add", attempts=attempts, started_at=started_at, **more
    )  # type: ignore[arg-type]


def render(metrics: PrometheusMetrics, **states: int) -> str:
    return metrics.render(running=0, states=states, queue_depths={"ai": 3})


class TestJobs:
    def test_a_job_counted_from_submit_through_start_to_failure(self) -> None:
        metrics = PrometheusMetrics(replica="r1", storage="memory")
        metrics.observe(job_event("PENDING", at=10.0, due_at=10.0, queue="ai"))
        metrics.observe(job_event("STARTED", at=12.5, attempts=1, started_at=12.5, due_at=10.0, queue="ai"))
        metrics.observe(job_event("FAILURE", at=13.0, attempts=1, started_at=12.5))
        text = render(metrics)
        assert value(text, "geekblog_jobs_submitted_total", task="t.add") == 1
        assert value(text, "geekblog_jobs_finished_total", task="t.add", state="FAILURE") == 1
        for state in ("SUCCESS", "REVOKED"):  # a task's other final states are there, at zero
            assert value(text, "geekblog_jobs_finished_total", task="t.add", state=state) == 0
        assert value(text, "geekblog_jobs_retried_total", task="t.add") == 0
        assert value(text, "geekblog_job_queue_wait_seconds_sum", task="t.add", queue="ai") == 2.5
        assert value(text, "geekblog_job_queue_wait_seconds_bucket", task="t.add", queue="ai", le="2.5") == 1
        assert value(text, "geekblog_job_queue_wait_seconds_bucket", task="t.add", queue="ai", le="1.0") == 0
        assert value(text, "geekblog_job_duration_seconds_sum", task="t.add") == 0.5
        assert value(text, "geekblog_job_duration_seconds_count", task="t.add") == 1
        kinds = types(text)
        assert kinds["geekblog_job_queue_wait_seconds"] == kinds["geekblog_job_duration_seconds"] == "histogram"
        assert kinds["geekblog_jobs_finished"] == "counter"

    def test_a_retry_and_progress(self) -> None:
        metrics = PrometheusMetrics(replica="r1", storage="memory")
        metrics.observe(job_event("RETRY", at=1.0, attempts=1))
        metrics.observe(job_event("PROGRESS", at=1.0, attempts=1))  # not a lifecycle state: not counted
        text = render(metrics)
        assert value(text, "geekblog_jobs_retried_total", task="t.add") == 1
        assert value(text, "geekblog_jobs_submitted_total", task="t.add") == 0


class TestGauges:
    def test_every_state_is_shown_and_queue_depths_per_queue(self) -> None:
        text = render(PrometheusMetrics(replica="r1", storage="sqlite"), PENDING=2, RETRY=1)
        assert value(text, "geekblog_shared_jobs", state="PENDING") == 2
        assert value(text, "geekblog_shared_jobs", state="SUCCESS") == 0, "a state with no job is kept at zero"
        assert value(text, "geekblog_jobs", state="REVOKED") == 0
        assert value(text, "geekblog_shared_queue_waiting") == 3
        assert value(text, "geekblog_shared_queue_depth", queue="ai") == 3
        assert value(text, "geekblog_replica_info", replica="r1", storage="sqlite") == 1

    def test_process_metrics_are_served(self) -> None:
        text = render(PrometheusMetrics(replica="r1", storage="memory"))
        assert value(text, "process_resident_memory_bytes")
        assert any(name == "python_info" for name, _ in samples(text))


class TestWorkflowsAndHttp:
    def test_workflows_by_state_and_requests_by_route_and_status(self) -> None:
        metrics = PrometheusMetrics(replica="r1", storage="memory")
        metrics.observe(Event(kind="workflow", id="w1", state="PENDING", at=1.0))
        metrics.observe(Event(kind="workflow", id="w1", state="SUCCESS", at=2.0))
        metrics.observe_request(method="GET", route="/jobs/{job_id}", status=404, seconds=0.002)
        text = render(metrics)
        assert value(text, "geekblog_workflows_total", state="PENDING") == 1
        assert value(text, "geekblog_workflows_total", state="SUCCESS") == 1
        assert value(text, "geekblog_workflows_total", state="FAILURE") == 0
        assert value(text, "geekblog_http_requests_total", method="GET", route="/jobs/{job_id}", status="404") == 1
        assert value(text, "geekblog_http_request_duration_seconds_count", method="GET", route="/jobs/{job_id}") == 1


def test_two_services_in_one_process_count_apart() -> None:
    first = PrometheusMetrics(replica="a", storage="memory")
    second = PrometheusMetrics(replica="b", storage="memory")
    first.observe(job_event("PENDING", at=0.0))
    assert value(render(first), "geekblog_jobs_submitted_total", task="t.add") == 1
    assert value(render(second), "geekblog_jobs_submitted_total", task="t.add") is None
