"""The ports: what the application needs from the outside world, as Protocols (one file each)."""

from application.ports.clock import Clock
from application.ports.engine_hooks import EngineHooks
from application.ports.event_bus import EventBus, Subscription
from application.ports.ids import IdSource
from application.ports.job_repository import (
    Commit,
    DispatcherStore,
    Guard,
    IdempotencyKey,
    JobFilter,
    JobPage,
    JobQueries,
    JobQueue,
    JobRepository,
    JobStore,
    Retention,
    ServiceStore,
    StorageLifecycle,
)
from application.ports.runner import Runner
from application.ports.starter import Starter
from application.ports.storage import StorageFull, StorageLocked, StorageUnavailable

__all__ = [
    "Clock",
    "Commit",
    "DispatcherStore",
    "EngineHooks",
    "EventBus",
    "Guard",
    "IdSource",
    "IdempotencyKey",
    "JobFilter",
    "JobPage",
    "JobQueries",
    "JobQueue",
    "JobRepository",
    "JobStore",
    "Retention",
    "Runner",
    "ServiceStore",
    "Starter",
    "StorageFull",
    "StorageLifecycle",
    "StorageLocked",
    "StorageUnavailable",
    "Subscription",
]
