"""The engine's side of what engines sharing one storage tell each other (:mod:`application.ports.peers`).

Several engines on one database must behave as one service: work queued through any of them starts on
an idle one at once, a stream on any of them follows a job running on another, and a cancel through any
of them reaches the engine running the job. :class:`Peers` does that over a :class:`PeerLink`; an engine
alone on its storage has a link that is not shared, and then it does nothing at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from application.dispatcher import Dispatcher
from application.events import Event
from application.ports import Clock, EventBus, JobStore
from application.ports.peers import PeerInbox, PeerLink
from domain.states import QUEUED_STATES, JobState

log = logging.getLogger(__name__)


class Peers(PeerInbox):
    """Tells the other engines what this one did, and acts on what they tell it.

    Every event this engine publishes is relayed; the event of a job put in the queue (submitted,
    retried, re-queued, recovered) also says work was queued, unless this engine claimed it as it was
    stored. What the others queued wakes the
    dispatcher; their events go to this engine's subscribers, never to its counters nor back to them
    (``EventBus.deliver``); a cancel of a job running here is done as a local one.

    Every ``poll_seconds`` the dispatcher also looks for due work, and jobs whose lease expired are
    recovered, whatever was (not) told: a lost notification delays work, a dead engine's jobs are
    back in the queue within about a lease and a poll, and neither is ever stranded.
    """

    def __init__(
        self,
        *,
        link: PeerLink,
        dispatcher: Dispatcher,
        bus: EventBus,
        repo: JobStore,
        clock: Clock,
        poll_seconds: float = 5.0,
        cancel_timeout: float = 5.0,
    ) -> None:
        if poll_seconds <= 0:
            raise ValueError("poll_seconds must be positive")
        self.link = link
        self._dispatcher = dispatcher
        self._bus = bus
        self._repo = repo
        self._clock = clock
        self.poll_seconds = poll_seconds
        self.cancel_timeout = cancel_timeout
        """How long a cancel waits for the engine running the job to answer before it stores the revocation
        itself (that engine is presumably gone)."""
        self.also_woken: list[Callable[[], None]] = []
        """Woken too when another engine says work was queued (the scheduler: a schedule changed there)."""
        self._relaying = False
        self._queued: set[str] = set()  # jobs queued in this turn of the loop (see _announce)
        self._poll: asyncio.Task[None] | None = None
        self._open = False

    async def start(self, *, dispatching: bool = True) -> None:
        """Listen to the other engines and relay to them (nothing when alone on the storage). Without
        ``dispatching`` (an engine that runs no jobs) there is no poll: it has no work to look for."""
        if not self.link.shared or self._open:
            return
        if not self._relaying:
            self._bus.add_listener(self._published)
            self._relaying = True
        await self.link.open(self, name=self._dispatcher.owner)
        self._open = True
        if dispatching:
            self._poll = asyncio.create_task(self._poll_loop(), name="geekblog-peer-poll")

    async def stop(self) -> None:
        """Stop polling; send what is queued; stop listening."""
        if not self._open:
            return
        self._open = False
        poll, self._poll = self._poll, None
        if poll is not None:
            poll.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await poll
        await self.link.close()

    # --- what the others are told --------------------------------------------------------------------

    def _published(self, event: Event) -> None:
        self.link.relay(event)
        if event.kind != "job" or event.progress is not None:
            return
        if event.state in QUEUED_STATES or (event.concurrency_key is not None and event.terminal):
            # queued work, or a concurrency key let go: the jobs waiting on it may start on another engine
            if not self._queued:
                asyncio.get_running_loop().call_soon(self._announce)
            self._queued.add(event.id)
        elif self._queued:
            self._queued.discard(event.id)

    def _announce(self) -> None:
        """Say work was queued, once for all the jobs queued in one turn of the loop, unless this engine
        claimed them all as they were stored (their STARTED event follows in the same turn)."""
        if self._queued:
            self._queued.clear()
            self.link.work_queued()

    async def cancel_running(self, job_id: str) -> bool:
        """Cancel a running job wherever it runs; True once its revocation is stored. False when it runs
        nowhere (claimed but not started, finishing), or on an engine that did not answer in time."""
        if await self._dispatcher.cancel_running(job_id):
            return True
        if not self.link.shared:
            return False
        job = await self._repo.get(job_id)
        owner = None if job is None or job.state != JobState.STARTED else job.lease_owner
        if job is None or owner is None or owner == self._dispatcher.owner:
            return False
        if job.lease_expires_at is not None and job.lease_expires_at <= self._clock.now():
            return False  # its engine stopped renewing the lease: nobody to ask
        return await self.link.cancel_on(owner, job_id, timeout=self.cancel_timeout)

    # --- what the others tell (PeerInbox) --------------------------------------------------------------

    def work_queued(self) -> None:
        self._dispatcher.wake()
        for wake in self.also_woken:
            wake()

    def say_work_queued(self) -> None:
        """Tell the other engines work was queued (or schedules changed): they look again now."""
        if self._open:
            self.link.work_queued()

    def deliver(self, event: Event) -> None:
        self._bus.deliver(event)

    async def cancel_here(self, job_id: str) -> bool:
        return await self._dispatcher.cancel_running(job_id)

    # --- the safety net --------------------------------------------------------------------------------

    async def _poll_loop(self) -> None:
        while True:
            await asyncio.sleep(self.poll_seconds)
            self._dispatcher.wake()
            try:
                await self._dispatcher.recover(self._clock.now())
            except Exception:
                log.exception("recovering expired leases failed; trying again in %s s", self.poll_seconds)
