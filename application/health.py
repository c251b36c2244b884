"""What ``/ready`` and ``/metrics`` ask of the engine, as one service: the HTTP layer needs no engine parts."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

import msgspec

from application.ports import JobRepository, Runner
from application.ports.metrics import Metrics
from domain.queues import DEFAULT_QUEUE
from domain.states import QUEUED_STATES, JobState


class EngineState(Protocol):
    """Whether the engine runs: started and not stopping (``Engine.started``)."""

    @property
    def started(self) -> bool: ...


class RunningJobs(Protocol):
    """How many jobs run in this process now (``Dispatcher.active_jobs``)."""

    @property
    def active_jobs(self) -> int: ...


SHARED_QUEUE_STATES = frozenset({*QUEUED_STATES, JobState.STARTED})
"""The states ``/ready`` counts: unfinished jobs only (indexed), never the finished ones kept for their results."""


class SharedQueue(msgspec.Struct, frozen=True, kw_only=True):
    """The jobs of the storage every replica shares, as the database counts them: each replica says the same."""

    waiting: int
    """PENDING or RETRY, scheduled ones included."""
    running: int
    """STARTED, on whichever replica."""

    @classmethod
    def of(cls, states: dict[str, int]) -> SharedQueue:
        return cls(
            waiting=sum(states.get(state, 0) for state in QUEUED_STATES),
            running=states.get(JobState.STARTED, 0),
        )


class Readiness(msgspec.Struct, frozen=True, kw_only=True):
    """What ``/ready`` reports: whether this replica can work (``problem`` says why not), which replica it
    is, the shared queue (``None`` when storage was not read) and the jobs running in this replica."""

    problem: str | None
    replica: str
    storage: str
    running_here: int
    shared_queue: SharedQueue | None


class QueueReport(msgspec.Struct, frozen=True, kw_only=True):
    """One named queue: its queued jobs in the shared storage, and whether (and how) this replica serves it."""

    name: str
    waiting: int
    served_here: bool
    concurrency_here: int | None
    """This replica's limit for the queue (``GEEKBLOG_QUEUES``); None: only the replica's total limits it."""


class HealthService:
    """Readiness and the metrics text, read from the engine's parts (given by the container).

    It exists so that the HTTP handlers of ``/ready`` and ``/metrics`` depend on one small service
    instead of reaching through the engine into its repository, dispatcher and runner."""

    def __init__(
        self,
        *,
        engine: EngineState,
        dispatcher: RunningJobs,
        repo: JobRepository,
        runner: Runner,
        metrics: Metrics,
        replica: str,
        storage: str,
        queues: Mapping[str, int | None] | None = None,
        runs_jobs: bool = True,
    ) -> None:
        self._served = queues
        self._runs_jobs = runs_jobs
        self.replica = replica
        self.storage = storage
        self._engine = engine
        self._dispatcher = dispatcher
        self._repo = repo
        self._runner = runner
        self._metrics = metrics

    async def ready(self) -> str | None:
        """``None`` when the engine runs and its storage answers a read; else why not, in a few words."""
        return (await self.readiness()).problem

    async def readiness(self) -> Readiness:
        """Ready when the engine runs and its storage answers the count of jobs by state (one read, which
        also gives the shared queue); the storage is not read while the engine is not running."""
        problem: str | None = None
        shared: SharedQueue | None = None
        if not self._engine.started:
            problem = "the engine is not running"
        else:
            try:
                shared = SharedQueue.of(await self._repo.count_by_state(SHARED_QUEUE_STATES))
            except Exception as exc:  # whatever the storage raises, the answer is "not ready", with its reason
                problem = f"database: {exc}"
        return Readiness(
            problem=problem,
            replica=self.replica,
            storage=self.storage,
            running_here=self._dispatcher.active_jobs,
            shared_queue=shared,
        )

    async def metrics_text(self) -> str:
        """The counters in a scraper's text format, with the jobs running in this replica, the jobs of the
        shared storage in each state and the depth of each queue (those this replica serves at 0 when empty)."""
        depths = dict(await self._repo.queue_depths())
        if self._runs_jobs:  # the queues this replica serves are shown when empty too
            for name in self._served if self._served is not None else (DEFAULT_QUEUE,):
                depths.setdefault(name, 0)
        return self._metrics.render(
            running=self._dispatcher.active_jobs,
            states=await self._repo.count_by_state(),
            stuck_threads=self._runner.stuck,
            queue_depths=depths,
        )

    async def queues(self) -> list[QueueReport]:
        """Every named queue that has queued jobs or that this replica serves, by name."""
        depths = await self._repo.queue_depths()
        served = {} if self._served is None else dict(self._served)
        return [
            QueueReport(
                name=name,
                waiting=depths.get(name, 0),
                served_here=self._runs_jobs and (self._served is None or name in served),
                concurrency_here=served.get(name) if self._runs_jobs else None,
            )
            for name in sorted({*depths, *served})
        ]
