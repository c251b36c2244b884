"""The engine: one object that owns the services and the dispatcher, and starts and stops them."""

from __future__ import annotations

import msgspec

from application.dispatcher import Dispatcher
from application.job_service import JobService
from application.maintenance import Maintenance
from application.ports import Clock, EventBus, IdSource, JobRepository, Runner
from application.registry import TaskRegistry
from application.workflows import WorkflowEngine


class EngineSettings(msgspec.Struct, frozen=True, kw_only=True):
    """How the engine runs: concurrency, lease length, and whether it alone uses its storage."""

    max_concurrent_tasks: int = 10
    lease_seconds: float = 60.0
    exclusive_storage: bool = True
    result_ttl: float = 7 * 24 * 3600.0
    maintenance_interval: float = 60.0


class Engine:
    """A durable task engine: submit and control jobs through :attr:`jobs`; :meth:`start` runs them."""

    def __init__(
        self,
        *,
        repo: JobRepository,
        registry: TaskRegistry,
        runner: Runner,
        bus: EventBus,
        clock: Clock,
        ids: IdSource,
        settings: EngineSettings,
    ) -> None:
        self.repo = repo
        self.registry = registry
        self.bus = bus
        self.settings = settings
        self.runner = runner
        self._started = False
        self.workflows = WorkflowEngine(repo, registry, clock, ids, bus)
        self.dispatcher = Dispatcher(
            repo=repo,
            runner=runner,
            registry=registry,
            workflows=self.workflows,
            clock=clock,
            bus=bus,
            owner=ids.new_id(),
            max_concurrent=settings.max_concurrent_tasks,
            lease_seconds=settings.lease_seconds,
        )
        self.maintenance = Maintenance(
            repo=repo,
            dispatcher=self.dispatcher,
            clock=clock,
            result_ttl=settings.result_ttl,
            interval=settings.maintenance_interval,
        )
        self.jobs = JobService(
            repo=repo,
            registry=registry,
            workflows=self.workflows,
            clock=clock,
            ids=ids,
            bus=bus,
            wake=self.dispatcher.wake,
            cancel_running=self.dispatcher.cancel_running,
            starter=self.dispatcher,
        )

    @property
    def started(self) -> bool:
        return self._started and self.dispatcher.running

    async def start(self) -> None:
        """Open storage, recover jobs of a dead process, start dispatching."""
        await self.repo.open()
        self.jobs.accept_thread_waiters()
        try:
            await self.dispatcher.start(recover_all_leases=self.settings.exclusive_storage)
        except BaseException:
            await self.repo.close()
            raise
        self.maintenance.start()
        self._started = True

    async def stop(self, grace: float = 0.0) -> None:
        """Stop dispatching (running jobs get ``grace`` seconds), then close the runner and storage."""
        if not self._started:
            return
        self._started = False
        try:
            await self.maintenance.stop()
            await self.dispatcher.stop(grace)
        finally:
            self.jobs.release_thread_waiters()
            try:
                await self.runner.close()
            finally:
                await self.repo.close()
