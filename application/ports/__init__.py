"""The ports: what the application needs from the outside world, as Protocols (one file each)."""

from application.ports.clock import Clock
from application.ports.event_bus import EventBus, Subscription
from application.ports.ids import IdSource
from application.ports.job_repository import Commit, Guard, JobFilter, JobPage, JobRepository
from application.ports.runner import Runner
from application.ports.storage import StorageFull, StorageLocked, StorageUnavailable

__all__ = [
    "Clock",
    "Commit",
    "EventBus",
    "Guard",
    "IdSource",
    "JobFilter",
    "JobPage",
    "JobRepository",
    "Runner",
    "StorageFull",
    "StorageLocked",
    "StorageUnavailable",
    "Subscription",
]
