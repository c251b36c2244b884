"""Prometheus metrics with ``prometheus_client``: counted from the event bus and the HTTP layer, exposed in
the text format every scraper reads, with the library's process metrics.

Each instance has its own :class:`~prometheus_client.CollectorRegistry` (never the library's global one), so
several services built in one process (tests, ``embedded_engine``) never share or collide on a metric.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from prometheus_client import (
    CollectorRegistry,
    Counter,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from application.events import Event
from domain.states import JobState, is_terminal

DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
WAIT_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0)
HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)

JOB_STATES = tuple(state.value for state in JobState)
TERMINAL_STATES = tuple(state for state in JOB_STATES if is_terminal(state))
WORKFLOW_STATES = ("PENDING", "SUCCESS", "FAILURE", "REVOKED")

CONTENT_TYPE = "text/plain; version=0.0.4"


class _Scrape:
    """What the storage and the engine said at the last scrape: read by the collector of gauges."""

    def __init__(self) -> None:
        self.running = 0
        self.stuck_threads = 0
        self.states: dict[str, int] = {}
        self.queue_depths: dict[str, int] = {}


class _Gauges(Collector):
    """The gauges read at scrape time: ``geekblog_replica_*`` from this replica's engine, ``geekblog_shared_*``
    from the storage that every replica on one database counts alike."""

    def __init__(self, replica: str, storage: str, scrape: _Scrape) -> None:
        self._replica = replica
        self._storage = storage
        self._scrape = scrape

    def collect(self) -> Iterator[Metric]:
        s = self._scrape
        info = GaugeMetricFamily(
            "geekblog_replica_info",
            "The replica answering (GEEKBLOG_REPLICA) and the storage it uses.",
            labels=["replica", "storage"],
        )
        info.add_metric([self._replica, self._storage], 1)
        yield info
        yield GaugeMetricFamily("geekblog_replica_jobs_running", "Jobs running now in this replica.", s.running)
        yield GaugeMetricFamily(
            "geekblog_stuck_threads",
            "Threads of this replica still running a sync task that was cancelled or timed out.",
            s.stuck_threads,
        )
        states = {state: s.states.get(state, 0) for state in JOB_STATES} | s.states  # zeros kept
        waiting = states[JobState.PENDING.value] + states[JobState.RETRY.value]
        yield GaugeMetricFamily(
            "geekblog_shared_queue_waiting",
            "Jobs waiting to run (PENDING or RETRY, scheduled ones included) in the shared storage: the same on"
            " every replica.",
            waiting,
        )
        yield _by_state(
            "geekblog_shared_jobs",
            "Jobs in the shared storage, by state: the same on every replica (STARTED counts the jobs running on"
            " all of them).",
            states,
        )
        depth = GaugeMetricFamily(
            "geekblog_shared_queue_depth",
            "Jobs waiting to run (PENDING or RETRY) in the shared storage, by named queue: the same on every replica.",
            labels=["queue"],
        )
        for queue, count in sorted(s.queue_depths.items()):
            depth.add_metric([queue], count)
        yield depth
        # the names before replicas were told apart, kept for existing dashboards
        yield GaugeMetricFamily("geekblog_jobs_running", "Deprecated: geekblog_replica_jobs_running.", s.running)
        yield GaugeMetricFamily("geekblog_jobs_queued", "Deprecated: geekblog_shared_queue_waiting.", waiting)
        yield _by_state("geekblog_jobs", "Deprecated: geekblog_shared_jobs.", states)


def _by_state(name: str, documentation: str, counts: dict[str, int]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, documentation, labels=["state"])
    for state, count in sorted(counts.items()):
        family.add_metric([state], count)
    return family


class PrometheusMetrics:
    """This replica's counters and histograms (jobs, workflows, HTTP requests), the gauges read at scrape time,
    and the process metrics, in a registry of its own.

    Listens to every event synchronously (``EventBus.add_listener``), so no event goes uncounted. The
    ``*_total`` counters and the histograms count what this replica did (they add up across replicas);
    ``geekblog_shared_*`` gauges are the storage's, the same on every replica (a dashboard takes one
    replica's value, or the max, never the sum).
    """

    def __init__(self, *, replica: str, storage: str, process_metrics: bool = True) -> None:
        self.replica = replica
        self.storage = storage
        self.registry = CollectorRegistry(auto_describe=True)
        self._scrape = _Scrape()
        self._seen_tasks: set[str] = set()
        r = self.registry
        self.submitted = Counter(
            "geekblog_jobs_submitted", "Jobs submitted by this replica, by task.", ["task"], registry=r
        )
        self.retried = Counter(
            "geekblog_jobs_retried", "Retries scheduled by this replica, by task.", ["task"], registry=r
        )
        self.finished = Counter(
            "geekblog_jobs_finished",
            "Jobs finished by this replica, by task and final state (every final state of a task seen, zeros kept).",
            ["task", "state"],
            registry=r,
        )
        self.duration = Histogram(
            "geekblog_job_duration_seconds",
            "Time from start to finish of this replica's job runs, by task.",
            ["task"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.queue_wait = Histogram(
            "geekblog_job_queue_wait_seconds",
            "Time a job waited from when it could run (submitted, or its ETA or retry time when later) until this"
            " replica started it, by task and queue.",
            ["task", "queue"],
            buckets=WAIT_BUCKETS,
            registry=r,
        )
        self.workflows = Counter(
            "geekblog_workflows",
            "Workflows that reached a state in this replica (PENDING: submitted), by state.",
            ["state"],
            registry=r,
        )
        for state in WORKFLOW_STATES:
            self.workflows.labels(state)
        self.http_requests = Counter(
            "geekblog_http_requests",
            "HTTP requests answered by this replica, by method, route (its template) and status code.",
            ["method", "route", "status"],
            registry=r,
        )
        self.http_duration = Histogram(
            "geekblog_http_request_duration_seconds",
            "Time until this replica started answering HTTP requests (the response's start), by method and route.",
            ["method", "route"],
            buckets=HTTP_BUCKETS,
            registry=r,
        )
        r.register(_Gauges(replica, storage, self._scrape))
        if process_metrics:
            ProcessCollector(registry=r)
            PlatformCollector(registry=r)
            GCCollector(registry=r)

    def observe(self, event: Event) -> None:
        if event.kind == "workflow":
            if event.state in WORKFLOW_STATES:
                self.workflows.labels(event.state).inc()
            return
        if event.kind != "job" or event.progress is not None or event.task is None:
            return
        task = event.task
        if task not in self._seen_tasks:
            self.know_tasks((task,))
        if event.state == JobState.PENDING and event.attempts == 0:
            self.submitted.labels(task).inc()
        elif event.state == JobState.STARTED:
            if event.started_at is not None and event.due_at is not None:
                wait = max(event.started_at - event.due_at, 0.0)
                self.queue_wait.labels(task, event.queue or "default").observe(wait)
        elif event.state == JobState.RETRY:
            self.retried.labels(task).inc()
        elif is_terminal(event.state):
            self.finished.labels(task, event.state).inc()
            if event.started_at is not None:
                self.duration.labels(task).observe(max(event.at - event.started_at, 0.0))

    def know_tasks(self, tasks: Iterable[str]) -> None:
        """Serve the counters of ``tasks`` at zero until they count something (a task's first event does it
        too): a rate or an alert has a series before the first job."""
        for task in tasks:
            if task in self._seen_tasks:
                continue
            self._seen_tasks.add(task)
            self.submitted.labels(task)
            self.retried.labels(task)
            for state in TERMINAL_STATES:
                self.finished.labels(task, state)

    def observe_request(self, *, method: str, route: str, status: int, seconds: float | None) -> None:
        self.http_requests.labels(method, route, str(status)).inc()
        if seconds is not None:
            self.http_duration.labels(method, route).observe(seconds)

    def render(
        self,
        *,
        running: int,
        states: dict[str, int],
        stuck_threads: int = 0,
        queue_depths: dict[str, int] | None = None,
    ) -> str:
        """The exposition text, with the gauges passed in: ``running`` in this replica, ``states`` and
        ``queue_depths`` (queued jobs per named queue) of the shared storage."""
        self._scrape.running = running
        self._scrape.stuck_threads = stuck_threads
        self._scrape.states = dict(states)
        self._scrape.queue_depths = dict(queue_depths or {})
        return generate_latest(self.registry).decode()
