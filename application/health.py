"""What ``/ready`` and ``/metrics`` ask of the engine, as one service: the HTTP layer needs no engine parts."""

from __future__ import annotations

from typing import Protocol

from application.ports import JobRepository, Runner
from application.ports.metrics import Metrics

# The id read by the readiness probe: no job has it, so the read touches storage and finds nothing.
PROBE_ID = "readiness-probe"


class EngineState(Protocol):
    """Whether the engine runs: started and not stopping (``Engine.started``)."""

    @property
    def started(self) -> bool: ...


class RunningJobs(Protocol):
    """How many jobs run in this process now (``Dispatcher.active_jobs``)."""

    @property
    def active_jobs(self) -> int: ...


class HealthService:
    """Readiness and the metrics text, read from the engine's parts (given by the container).

    It exists so that the HTTP handlers of ``/ready`` and ``/metrics`` depend on one small service
    instead of reaching through the engine into its repository, dispatcher and runner."""

    def __init__(
        self, *, engine: EngineState, dispatcher: RunningJobs, repo: JobRepository, runner: Runner, metrics: Metrics
    ) -> None:
        self._engine = engine
        self._dispatcher = dispatcher
        self._repo = repo
        self._runner = runner
        self._metrics = metrics

    async def ready(self) -> str | None:
        """``None`` when the engine runs and its storage answers a read; else why not, in a few words."""
        if not self._engine.started:
            return "the engine is not running"
        try:
            await self._repo.get(PROBE_ID)
        except Exception as exc:  # whatever the storage raises, the answer is "not ready", with its reason
            return f"database: {exc}"
        return None

    async def metrics_text(self) -> str:
        """The counters in a scraper's text format, with the jobs running now and the jobs in each state."""
        return self._metrics.render(
            running=self._dispatcher.active_jobs,
            states=await self._repo.count_by_state(),
            stuck_threads=self._runner.stuck,
        )
