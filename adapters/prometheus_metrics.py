"""Prometheus metrics, counted from the event bus and rendered in the text exposition format."""

from __future__ import annotations

from collections import defaultdict

from application.events import Event
from domain.states import JobState, is_terminal

DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


class PrometheusMetrics:
    """Counters of jobs submitted and finished by task, and a histogram of run durations.

    Listens to every event synchronously (``EventBus.add_listener``), so no event goes uncounted.
    Gauges are read at scrape time: ``geekblog_replica_*`` from this replica's engine,
    ``geekblog_shared_*`` from the storage, which every replica on one database counts alike (so a
    dashboard takes one replica's value, or the max, never the sum).
    """

    def __init__(self, *, replica: str, storage: str) -> None:
        self.replica = replica
        self.storage = storage
        self.submitted: dict[str, int] = defaultdict(int)
        self.finished: dict[tuple[str, str], int] = defaultdict(int)
        self.retried: dict[str, int] = defaultdict(int)
        self._buckets: dict[str, list[int]] = {}
        self._sums: dict[str, float] = defaultdict(float)
        self._counts: dict[str, int] = defaultdict(int)

    def observe(self, event: Event) -> None:
        if event.kind != "job" or event.progress is not None or event.task is None:
            return
        if event.state == JobState.PENDING and event.attempts == 0:
            self.submitted[event.task] += 1
        elif event.state == JobState.RETRY:
            self.retried[event.task] += 1
        elif is_terminal(event.state):
            self.finished[(event.task, event.state)] += 1
            if event.started_at is not None:
                self._observe_duration(event.task, max(event.at - event.started_at, 0.0))

    def _observe_duration(self, task: str, seconds: float) -> None:
        buckets = self._buckets.setdefault(task, [0] * len(DURATION_BUCKETS))
        for index, bound in enumerate(DURATION_BUCKETS):
            if seconds <= bound:
                buckets[index] += 1
        self._sums[task] += seconds
        self._counts[task] += 1

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
        waiting = states.get("PENDING", 0) + states.get("RETRY", 0)
        lines = [
            "# HELP geekblog_replica_info The replica answering (GEEKBLOG_REPLICA) and the storage it uses.",
            "# TYPE geekblog_replica_info gauge",
            f'geekblog_replica_info{{replica="{_label(self.replica)}",storage="{_label(self.storage)}"}} 1',
            "# HELP geekblog_jobs_submitted_total Jobs submitted by this replica, by task.",
            "# TYPE geekblog_jobs_submitted_total counter",
        ]
        lines += [f'geekblog_jobs_submitted_total{{task="{_label(t)}"}} {n}' for t, n in sorted(self.submitted.items())]
        lines += [
            "# HELP geekblog_jobs_finished_total Jobs finished by this replica, by task and final state.",
            "# TYPE geekblog_jobs_finished_total counter",
        ]
        lines += [
            f'geekblog_jobs_finished_total{{task="{_label(t)}",state="{s}"}} {n}'
            for (t, s), n in sorted(self.finished.items())
        ]
        lines += [
            "# HELP geekblog_jobs_retried_total Retries scheduled by this replica, by task.",
            "# TYPE geekblog_jobs_retried_total counter",
        ]
        lines += [f'geekblog_jobs_retried_total{{task="{_label(t)}"}} {n}' for t, n in sorted(self.retried.items())]
        lines += [
            "# HELP geekblog_replica_jobs_running Jobs running now in this replica.",
            "# TYPE geekblog_replica_jobs_running gauge",
            f"geekblog_replica_jobs_running {running}",
            "# HELP geekblog_stuck_threads Threads of this replica still running a sync task that was cancelled"
            " or timed out.",
            "# TYPE geekblog_stuck_threads gauge",
            f"geekblog_stuck_threads {stuck_threads}",
            "# HELP geekblog_shared_queue_waiting Jobs waiting to run (PENDING or RETRY, scheduled ones included)"
            " in the shared storage: the same on every replica.",
            "# TYPE geekblog_shared_queue_waiting gauge",
            f"geekblog_shared_queue_waiting {waiting}",
            "# HELP geekblog_shared_jobs Jobs in the shared storage, by state: the same on every replica"
            " (STARTED counts the jobs running on all of them).",
            "# TYPE geekblog_shared_jobs gauge",
        ]
        lines += [f'geekblog_shared_jobs{{state="{state}"}} {count}' for state, count in sorted(states.items())]
        lines += [
            "# HELP geekblog_shared_queue_depth Jobs waiting to run (PENDING or RETRY) in the shared storage, by"
            " named queue: the same on every replica.",
            "# TYPE geekblog_shared_queue_depth gauge",
        ]
        lines += [
            f'geekblog_shared_queue_depth{{queue="{_label(queue)}"}} {count}'
            for queue, count in sorted((queue_depths or {}).items())
        ]
        lines += [  # the names before replicas were told apart, kept for existing dashboards
            "# HELP geekblog_jobs_running Deprecated: geekblog_replica_jobs_running.",
            "# TYPE geekblog_jobs_running gauge",
            f"geekblog_jobs_running {running}",
            "# HELP geekblog_jobs_queued Deprecated: geekblog_shared_queue_waiting.",
            "# TYPE geekblog_jobs_queued gauge",
            f"geekblog_jobs_queued {waiting}",
            "# HELP geekblog_jobs Deprecated: geekblog_shared_jobs.",
            "# TYPE geekblog_jobs gauge",
        ]
        lines += [f'geekblog_jobs{{state="{state}"}} {count}' for state, count in sorted(states.items())]
        lines += [
            "# HELP geekblog_job_duration_seconds Time from start to finish of this replica's job runs, by task.",
            "# TYPE geekblog_job_duration_seconds histogram",
        ]
        for task, buckets in sorted(self._buckets.items()):
            name = _label(task)
            for bound, count in zip(DURATION_BUCKETS, buckets, strict=True):
                lines.append(f'geekblog_job_duration_seconds_bucket{{task="{name}",le="{bound}"}} {count}')
            lines.append(f'geekblog_job_duration_seconds_bucket{{task="{name}",le="+Inf"}} {self._counts[task]}')
            lines.append(f'geekblog_job_duration_seconds_sum{{task="{name}"}} {self._sums[task]:.6f}')
            lines.append(f'geekblog_job_duration_seconds_count{{task="{name}"}} {self._counts[task]}')
        return "\n".join(lines) + "\n"


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
