"""Recovery of the jobs whose worker died: their lease ran out (or, at start, every lease of an engine
alone on its storage is dead), so they go back to the queue, or fail where the task opted out of running
again. Engines sharing a database all recover: a job one of them recovered first is skipped by the others."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import msgspec

from application.outcomes import WorkerLostError
from application.ports import Clock, Guard, JobQueue
from domain.errors import Conflict
from domain.job import ErrorInfo, Job

log = logging.getLogger(__name__)


async def recover_lost(
    repo: JobQueue,
    clock: Clock,
    store: Callable[[Job, Guard], Awaitable[None]],
    expired_before: float,
    recovered_one: Callable[[Job, Job], None] | None = None,
) -> int:
    """Re-queue (or fail) the STARTED jobs whose lease expired before ``expired_before``, each stored with
    ``store`` under a guard on the dead lease, then told to ``recovered_one`` (the job, what it became);
    how many were recovered here."""
    lost = await repo.leased_jobs(expired_before=expired_before)
    now = clock.now()
    recovered = 0
    for job in lost:
        if job.retry_on_worker_lost and (job.max_retries is None or job.attempts <= job.max_retries):
            again = job.requeued(now=now)
            changed = msgspec.structs.replace(again, options=msgspec.structs.replace(again.options, redelivered=True))
        else:
            message = f"worker lost while running job {job.id} ({job.task})"
            changed = job.failed(ErrorInfo(type=WorkerLostError.__name__, message=message), now=now)
        try:
            await store(changed, Guard(job_id=job.id, owner=job.lease_owner))
        except Conflict:  # another engine recovered it first, or its owner stored it after all
            continue
        recovered += 1
        if recovered_one is not None:
            recovered_one(job, changed)
    if recovered:
        log.warning("recovered %d job(s) left running by an engine that stopped", recovered)
    return recovered


async def renew_leases(
    repo: JobQueue, clock: Clock, owner: str, lease_seconds: float, running: Callable[[], list[str]]
) -> None:
    """Forever: every third of ``lease_seconds``, extend the leases of the jobs ``running()`` names, so only
    an engine that stopped renewing (dead, frozen, cut off) loses its jobs to recovery."""
    interval = lease_seconds / 3
    while True:
        await asyncio.sleep(interval)
        jobs = running()
        if jobs:
            now = clock.now()
            try:
                await repo.renew_leases(owner, jobs, now + lease_seconds)
            except Exception:
                log.exception("renewing leases failed")
