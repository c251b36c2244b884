"""Periodic upkeep: re-queue jobs whose lease ran out, and purge finished work past its retention."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from application.dispatcher import Dispatcher
from application.ports import Clock, Retention

log = logging.getLogger(__name__)


class Maintenance:
    """Every ``interval`` seconds: recover expired leases (a job whose outcome could not be stored, say),
    and delete jobs and workflows that finished more than ``result_ttl`` seconds ago (0 keeps them)."""

    def __init__(
        self, *, repo: Retention, dispatcher: Dispatcher, clock: Clock, result_ttl: float, interval: float
    ) -> None:
        self._repo = repo
        self._dispatcher = dispatcher
        self._clock = clock
        self._result_ttl = result_ttl
        self._interval = interval
        self._task: asyncio.Task[None] | None = None

    async def run_once(self) -> tuple[int, int]:
        """One round: (jobs recovered, jobs and workflows purged)."""
        now = self._clock.now()
        recovered = await self._dispatcher.recover(now)
        purged = await self._repo.purge(now - self._result_ttl) if self._result_ttl > 0 else 0
        if purged:
            log.info("purged %d finished job(s) and workflow(s) older than %s s", purged, self._result_ttl)
        return recovered, purged

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="geekblog-maintenance")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.run_once()
            except Exception:
                log.exception("maintenance round failed; trying again in %s s", self._interval)
