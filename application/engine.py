"""The engine: one object that owns the services and the dispatcher, and starts and stops them."""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from application.dispatcher import Dispatcher
from application.job_service import JobService
from application.maintenance import Maintenance
from application.peers import Peers
from application.ports import Clock, EngineHooks, EventBus, IdSource, JobRepository, Runner
from application.ports.peers import PeerLink
from application.ports.schedule_store import ScheduleStore
from application.registry import TaskRegistry
from application.schedules import ScheduleService
from application.workflows import WorkflowEngine


class EngineSettings(msgspec.Struct, frozen=True, kw_only=True):
    """How the engine runs: concurrency, lease length, and whether it alone uses its storage.

    ``poll_seconds``: with other engines on its storage, how often it looks for due work and expired
    leases without being told (see :class:`~application.peers.Peers`).

    ``cancel_timeout``: how long a cancel of a job running on another engine waits for that engine's answer.

    ``run_jobs``: False for an engine that submits, follows and controls jobs but runs none (no dispatcher,
    no maintenance): other engines sharing its storage run them."""

    max_concurrent_tasks: int = 10
    lease_seconds: float = 60.0
    exclusive_storage: bool = True
    result_ttl: float = 7 * 24 * 3600.0
    maintenance_interval: float = 60.0
    poll_seconds: float = 5.0
    cancel_timeout: float = 5.0
    run_jobs: bool = True
    queues: dict[str, int | None] | None = None
    """The named queues the dispatcher serves, each with its own concurrency or None; None: every queue."""


class Engine:
    """A durable task engine: submit and control jobs through :attr:`jobs`; :meth:`start` runs them.

    It starts and stops the services it is given (the container builds them; :meth:`assemble` builds them
    for code that has no container)."""

    def __init__(
        self,
        *,
        repo: JobRepository,
        registry: TaskRegistry,
        runner: Runner,
        bus: EventBus,
        workflows: WorkflowEngine,
        dispatcher: Dispatcher,
        maintenance: Maintenance,
        jobs: JobService,
        settings: EngineSettings,
        hooks: Sequence[EngineHooks] = (),
        peers: Peers | None = None,
        schedules: ScheduleService | None = None,
    ) -> None:
        self.repo = repo
        self.registry = registry
        self.bus = bus
        self.settings = settings
        self.runner = runner
        self._started = False
        self.workflows = workflows
        self.dispatcher = dispatcher
        self.maintenance = maintenance
        self.jobs = jobs
        self.peers = peers
        """What the other engines of its storage are told and tell it (None: nothing, as when alone)."""
        self._hooks = list(hooks)
        self.schedules = schedules
        """Periodic schedules, fired while the engine runs jobs (None: this engine has none)."""

    @classmethod
    def assemble(
        cls,
        *,
        repo: JobRepository,
        registry: TaskRegistry,
        runner: Runner,
        bus: EventBus,
        clock: Clock,
        ids: IdSource,
        settings: EngineSettings,
        link: PeerLink | None = None,
        schedule_store: ScheduleStore | None = None,
    ) -> Engine:
        """An engine with its services built from these parts, as the container wires them (``link``: to
        the other engines of its storage, if any)."""
        workflows = WorkflowEngine(repo, registry, clock, ids, bus)
        dispatcher = new_dispatcher(
            repo=repo,
            runner=runner,
            registry=registry,
            workflows=workflows,
            clock=clock,
            bus=bus,
            ids=ids,
            settings=settings,
        )
        peers = None
        if link is not None:
            peers = new_peers(link=link, dispatcher=dispatcher, bus=bus, repo=repo, clock=clock, settings=settings)
        jobs = new_job_service(
            repo=repo,
            registry=registry,
            workflows=workflows,
            clock=clock,
            ids=ids,
            bus=bus,
            dispatcher=dispatcher,
            peers=peers,
        )
        schedules = None
        if schedule_store is not None:
            schedules = new_schedule_service(
                store=schedule_store, jobs=jobs, registry=registry, clock=clock, ids=ids, settings=settings, peers=peers
            )
        return cls(
            repo=repo,
            registry=registry,
            runner=runner,
            bus=bus,
            workflows=workflows,
            dispatcher=dispatcher,
            maintenance=new_maintenance(repo=repo, dispatcher=dispatcher, clock=clock, settings=settings),
            jobs=jobs,
            settings=settings,
            peers=peers,
            schedules=schedules,
        )

    @property
    def hooks(self) -> list[EngineHooks]:
        """What is told when the engine starts and stops."""
        return list(self._hooks)

    @property
    def started(self) -> bool:
        """Started and not stopping: dispatching, unless it runs no jobs."""
        return self._started and (self.dispatcher.running or not self.settings.run_jobs)

    async def start(self) -> None:
        """Open storage, recover jobs of a dead process, start dispatching (unless it runs no jobs)."""
        await self.repo.open()
        for hook in self._hooks:
            hook.engine_started()
        try:
            if self.peers is not None:  # listening first: work the others queue from now on is heard
                await self.peers.start(dispatching=self.settings.run_jobs)
            if self.settings.run_jobs:
                await self.dispatcher.start(recover_all_leases=self.settings.exclusive_storage)
                if self.schedules is not None:
                    await self.schedules.start()
        except BaseException:
            try:
                if self.schedules is not None:
                    await self.schedules.stop()
                await self.dispatcher.stop()
                if self.peers is not None:
                    await self.peers.stop()
            finally:
                await self.repo.close()
            raise
        if self.settings.run_jobs:
            self.maintenance.start()
        self._started = True

    async def stop(self, grace: float = 0.0) -> None:
        """Stop dispatching (running jobs get ``grace`` seconds), then close the runner and storage."""
        if not self._started:
            return
        self._started = False
        try:
            if self.schedules is not None:  # no new tick once stopping: the next start (any engine) fires it
                await self.schedules.stop()
            await self.maintenance.stop()
            await self.dispatcher.stop(grace)
        finally:
            try:
                if self.peers is not None:  # after the last outcomes, whose events it relays
                    await self.peers.stop()
            finally:
                for hook in self._hooks:
                    hook.engine_stopped()
                try:
                    await self.runner.close()
                finally:
                    await self.repo.close()


def new_dispatcher(
    *,
    repo: JobRepository,
    runner: Runner,
    registry: TaskRegistry,
    workflows: WorkflowEngine,
    clock: Clock,
    bus: EventBus,
    ids: IdSource,
    settings: EngineSettings,
) -> Dispatcher:
    """The dispatcher of one engine: its own lease owner id, the concurrency and lease of ``settings``."""
    return Dispatcher(
        repo=repo,
        runner=runner,
        registry=registry,
        workflows=workflows,
        clock=clock,
        bus=bus,
        owner=ids.new_id(),
        max_concurrent=settings.max_concurrent_tasks,
        lease_seconds=settings.lease_seconds,
        queues=settings.queues,
    )


def new_maintenance(
    *, repo: JobRepository, dispatcher: Dispatcher, clock: Clock, settings: EngineSettings
) -> Maintenance:
    """The periodic recovery and purge of one engine, on the interval and result TTL of ``settings``."""
    return Maintenance(
        repo=repo,
        dispatcher=dispatcher,
        clock=clock,
        result_ttl=settings.result_ttl,
        interval=settings.maintenance_interval,
    )


def new_job_service(
    *,
    repo: JobRepository,
    registry: TaskRegistry,
    workflows: WorkflowEngine,
    clock: Clock,
    ids: IdSource,
    bus: EventBus,
    dispatcher: Dispatcher,
    peers: Peers | None = None,
) -> JobService:
    """The job service, woken, cancelling and starting jobs through ``dispatcher``; cancelling a job that
    runs on another engine through ``peers``."""
    return JobService(
        repo=repo,
        registry=registry,
        workflows=workflows,
        clock=clock,
        ids=ids,
        bus=bus,
        wake=dispatcher.wake,
        cancel_running=dispatcher.cancel_running if peers is None else peers.cancel_running,
        starter=dispatcher,
    )


def new_schedule_service(
    *,
    store: ScheduleStore,
    jobs: JobService,
    registry: TaskRegistry,
    clock: Clock,
    ids: IdSource,
    settings: EngineSettings,
    peers: Peers | None = None,
) -> ScheduleService:
    """The schedules of one engine. With other engines on its storage (``peers``), a change here wakes their
    schedulers (the "work queued" packet) and theirs wakes this one; a re-read every ``poll_seconds`` is the
    safety net for a lost packet."""
    service = ScheduleService(
        store=store,
        jobs=jobs,
        registry=registry,
        clock=clock,
        ids=ids,
        reread_seconds=None if settings.exclusive_storage else settings.poll_seconds,
        tell_others=None if peers is None else peers.say_work_queued,
    )
    if peers is not None:
        peers.also_woken.append(service.wake)
    return service


def new_peers(
    *,
    link: PeerLink,
    dispatcher: Dispatcher,
    bus: EventBus,
    repo: JobRepository,
    clock: Clock,
    settings: EngineSettings,
) -> Peers:
    """The engine's side of ``link`` (to the other engines of its storage), polling every ``poll_seconds``."""
    return Peers(
        link=link,
        dispatcher=dispatcher,
        bus=bus,
        repo=repo,
        clock=clock,
        poll_seconds=settings.poll_seconds,
        cancel_timeout=settings.cancel_timeout,
    )
