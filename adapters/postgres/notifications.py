"""LISTEN/NOTIFY between the engines of one PostgreSQL database: the PostgreSQL :class:`PeerLink`.

Each engine LISTENs on a connection of its own (not one of the pool's) and sends with ``pg_notify``
through the pool: one sender task takes everything queued since its last send (work queued, events,
cancel requests and answers) and sends it as one statement of as few payloads as fit
(:mod:`~adapters.postgres.peer_packets`), so a burst of submissions costs a few notifications, not one
each, and the sender's order is the order the others receive. Events are queued after their commit, so
a notification never announces what is not stored yet. What can wait (a job started, progress, a
heartbeat) is held up to ``linger`` seconds for something urgent (work queued, a job or workflow ended, a
cancel) to go with it: a short job's start and end cost one notification, not two.

Nothing is relayed while nobody listens: each engine keeps the names of the others it heard from (any
packet, a heartbeat every ``keepalive`` seconds, a ``hello`` that every other engine answers) and
relays events and work queued only while one of them is alive, so an engine alone on its database pays
nothing for being able to share it. A starting engine counts the other listening connections of the
database and waits (at most ``hello_wait`` seconds) until as many engines answered its hello: once
:meth:`PostgresPeerLink.open` returns, they relay to it. An engine silent for ``peer_timeout`` seconds
is forgotten; one that stops says ``bye``.

Received packets are handled in order by one task: light events (too big for a payload) are completed
from the database before they are delivered, so a subscriber sees events in the order they were
published. A packet the engine sent itself is ignored.

The listening connection is watched (its end is noticed at once when the server closes it, and a
``SELECT 1`` every ``keepalive`` seconds finds one that went silent); once lost it is opened again, and
the engine is told to look for work once, since what was sent meanwhile is gone. Nothing here is needed
for correctness: the engines' slow poll finds work whose notification was lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from typing import Final

import asyncpg
import msgspec

from adapters.postgres.errors import StorageError, one_line
from adapters.postgres.job_repository import PostgresJobRepository
from adapters.postgres.peer_packets import CHANNEL, CancelAnswer, CancelAsk, Outbox, Packet, decode, item
from application.events import Event
from application.ports.peers import PeerInbox, PeerLink
from domain.states import JobState

__all__ = ["PostgresPeerLink"]

log = logging.getLogger(__name__)

_NOTIFY_SQL: Final = "SELECT pg_notify($1, payload) FROM unnest($2::text[]) AS payload"
_PAYLOADS_PER_STATEMENT: Final = 64
_FLUSH_SECONDS: Final = 5.0
_LISTENER_NAME: Final = "geekblog-tasks listener"
_OTHER_LISTENERS_SQL: Final = (
    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND application_name = $1 AND pid <> $2"
)


class PostgresPeerLink(PeerLink):
    """Tells the other engines of the database what this one did, and this one what they did."""

    def __init__(
        self,
        repo: PostgresJobRepository,
        *,
        keepalive: float = 5.0,
        connect_timeout: float = 10.0,
        reconnect_delay: float = 0.05,
        max_reconnect_delay: float = 2.0,
        hello_wait: float = 2.0,
        peer_timeout: float | None = None,
        linger: float = 0.02,
    ) -> None:
        self._repo = repo
        self.linger = linger
        """How long what can wait (a job started, progress) is held for something urgent to go with it."""
        self.keepalive = keepalive
        self.hello_wait = hello_wait
        self.peer_timeout = 6 * keepalive if peer_timeout is None else peer_timeout
        """How long an engine heard nothing from is still taken as alive (it sends every ``keepalive`` s)."""
        self.connect_timeout = connect_timeout
        self.reconnect_delay = reconnect_delay
        self.max_reconnect_delay = max_reconnect_delay
        self._name = ""
        self._own_prefix = ""
        self._peers: dict[str, float] = {}  # the other engines heard from: name -> when last (monotonic)
        self._met = asyncio.Event()
        self._inbox: PeerInbox | None = None
        self._outbox = Outbox("")
        self._ready = asyncio.Event()
        self._inbound: asyncio.Queue[Packet] = asyncio.Queue()
        self._connection: asyncpg.Connection | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._answering: set[asyncio.Task[None]] = set()
        self._asked: dict[int, asyncio.Future[bool]] = {}
        self._ask_ids = itertools.count(1)
        self._open = False
        self._closing = False
        self.reconnections = 0
        """How many times the listening connection was opened again after it was lost."""
        self.notifications = 0
        """How many notifications (payloads) were sent."""

    def __repr__(self) -> str:
        return f"PostgresPeerLink({self._repo.where!r})"

    @property
    def shared(self) -> bool:
        return True

    @property
    def peers(self) -> list[str]:
        """The other engines taken as alive (heard from within ``peer_timeout`` seconds), by name."""
        return sorted(self._peers)

    @property
    def listener_pid(self) -> int | None:
        """The server process of the listening connection (None while there is none)."""
        connection = self._connection
        return None if connection is None or connection.is_closed() else connection.get_server_pid()

    # --- lifecycle ------------------------------------------------------------------------------------

    async def open(self, inbox: PeerInbox, *, name: str) -> None:
        if self._open:
            return
        self._inbox, self._name = inbox, name
        self._own_prefix = msgspec.json.encode({"sender": name}).decode()[:-1]
        self._outbox = Outbox(name)
        self._ready = asyncio.Event()
        self._inbound = asyncio.Queue()
        self._peers.clear()
        connection = await self._connect()
        self._open, self._closing = True, False
        self._tasks = [
            asyncio.create_task(self._keep_listening(connection), name="geekblog-peer-listener"),
            asyncio.create_task(self._send_loop(), name="geekblog-peer-sender"),
            asyncio.create_task(self._receive_loop(), name="geekblog-peer-receiver"),
            asyncio.create_task(self._beat_loop(), name="geekblog-peer-heartbeat"),
        ]
        await self._meet(connection.get_server_pid())

    async def _meet(self, own_pid: int) -> None:
        """Say hello, and wait until the engines listening now answered (each answers once it relays here)."""
        try:
            rows = await self._repo.writer.fetch(_OTHER_LISTENERS_SQL, _LISTENER_NAME, own_pid)
            others = int(rows[0][0])
        except Exception as exc:
            log.warning("cannot count the other engines of %s: %s", self._repo.where, one_line(exc))
            others = 1
        self._outbox.hello = True
        self._ready.set()
        if others == 0:
            return
        try:
            async with asyncio.timeout(self.hello_wait):
                while len(self._peers) < others:
                    self._met.clear()
                    await self._met.wait()
        except TimeoutError:
            log.info("%d of %d other engine(s) answered within %s s", len(self._peers), others, self.hello_wait)

    async def close(self) -> None:
        if not self._open:
            return
        self._open = False
        for answering in list(self._answering):
            answering.cancel()
        listener, sender, receiver, beat = self._tasks
        self._tasks = []
        self._closing = True  # the sender sends what is queued, then ends
        self._outbox.bye = True
        self._ready.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(sender), _FLUSH_SECONDS)
        for task in (listener, sender, receiver, beat):
            task.cancel()
        await asyncio.gather(listener, sender, receiver, beat, *self._answering, return_exceptions=True)
        self._peers.clear()
        for waiting in self._asked.values():
            if not waiting.done():
                waiting.set_result(False)
        self._asked.clear()
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.terminate()

    # --- sending --------------------------------------------------------------------------------------

    def work_queued(self) -> None:
        if self._open and self._peers:
            self._outbox.due = True
            self._ready.set()

    def relay(self, event: Event) -> None:
        if self._open and self._peers:
            self._outbox.add_event(event)
            self._ready.set()

    async def cancel_on(self, owner: str, job_id: str, *, timeout: float) -> bool:
        if not self._open:
            return False
        ask = next(self._ask_ids)
        answer: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._asked[ask] = answer
        self._outbox.asks.append(CancelAsk(to=owner, job=job_id, ask=ask))
        self._ready.set()
        try:
            return await asyncio.wait_for(answer, timeout)
        except TimeoutError:
            log.warning("engine %s did not answer a cancel of job %s within %s s", owner, job_id, timeout)
            return False
        finally:
            self._asked.pop(ask, None)

    async def _send_loop(self) -> None:
        while True:
            await self._ready.wait()
            await asyncio.sleep(0)  # the rest of this turn of the loop first: what it queues goes along
            if self.linger > 0:
                await self._linger()
            self._ready.clear()
            await self._send(self._outbox.take())
            if self._closing and not self._ready.is_set():  # closing, and everything queued was sent
                return

    async def _linger(self) -> None:
        """Hold what can wait until something urgent is queued or ``linger`` seconds passed: a short job's
        start and its end go as one notification, and a burst of progress as one per ``linger``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.linger
        while not self._outbox.urgent and not self._closing:
            self._ready.clear()
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            try:
                await asyncio.wait_for(self._ready.wait(), remaining)
            except TimeoutError:
                return

    async def _beat_loop(self) -> None:
        """Every ``keepalive`` seconds: say this engine is alive, and forget the engines silent too long."""
        while True:
            await asyncio.sleep(self.keepalive)
            silent_since = time.monotonic() - self.peer_timeout
            for name in [name for name, heard in self._peers.items() if heard < silent_since]:
                del self._peers[name]
                log.info("engine %s was not heard from for %s s: nothing is relayed to it now", name, self.peer_timeout)
            self._outbox.beat = True
            self._ready.set()

    async def _send(self, payloads: list[str]) -> None:
        if self._outbox.dropped:
            log.warning(
                "%d event(s) were not relayed to other engines: their sending fell behind", self._outbox.dropped
            )
            self._outbox.dropped = 0
        for start in range(0, len(payloads), _PAYLOADS_PER_STATEMENT):
            chunk = payloads[start : start + _PAYLOADS_PER_STATEMENT]
            try:
                await self._repo.writer.fetch(_NOTIFY_SQL, CHANNEL, chunk)
                self.notifications += len(chunk)
            except Exception as exc:  # the others' poll finds the work; their subscribers miss these events
                log.warning("%d notification(s) to other engines not sent: %s", len(chunk), one_line(exc))

    # --- receiving ------------------------------------------------------------------------------------

    def _on_notification(self, _connection: object, _pid: int, _channel: str, payload: object) -> None:
        text = str(payload)
        if text.startswith(self._own_prefix):  # sent by this engine: not even decoded
            return
        try:
            packet = decode(text)
        except msgspec.DecodeError as exc:
            log.warning("a notification on %s is not a packet of this engine's version: %s", CHANNEL, exc)
            return
        if packet.sender == self._name or self._inbox is None:
            return
        self._heard(packet)
        if packet.due:
            self._inbox.work_queued()
        if packet.events or packet.asks or packet.answers:
            self._inbound.put_nowait(packet)

    def _heard(self, packet: Packet) -> None:
        if packet.bye:
            self._peers.pop(packet.sender, None)
        else:
            if packet.sender not in self._peers:
                self._met.set()
            self._peers[packet.sender] = time.monotonic()
        if packet.hello:  # an engine starting: answer once it is relayed to, so its open() can return
            self._outbox.beat = True
            self._ready.set()

    async def _receive_loop(self) -> None:
        while True:
            packet = await self._inbound.get()
            try:
                await self._handle(packet)
            except Exception:
                log.exception("a packet from engine %s was not handled", packet.sender)

    async def _handle(self, packet: Packet) -> None:
        inbox = self._inbox
        assert inbox is not None
        for raw in packet.events:
            try:
                whole, event = item(raw)
            except msgspec.DecodeError as exc:
                log.warning("an event from engine %s cannot be read: %s", packet.sender, exc)
                continue
            inbox.deliver(event if whole == "e" else await self._completed(event))
        for ask in packet.asks:
            if ask.to == self._name:
                answering = asyncio.create_task(self._answer(packet.sender, ask), name=f"geekblog-cancel-{ask.job}")
                self._answering.add(answering)
                answering.add_done_callback(self._answering.discard)
        for answer in packet.answers:
            waiting = self._asked.get(answer.ask) if answer.to == self._name else None
            if waiting is not None and not waiting.done():
                waiting.set_result(answer.done)

    async def _completed(self, event: Event) -> Event:
        """A light event with its result, error or progress as stored, while it still is the stored state;
        the light event itself otherwise (the job moved on, or it cannot be read)."""
        try:
            if event.kind == "job":
                job = await self._repo.get(event.id)
                if job is None or job.attempts != event.attempts:
                    return event
                if event.progress is not None:
                    current = job.progress
                    if job.state == JobState.STARTED and current is not None and current.state == event.state:
                        return Event.of_progress(job, current, event.at)
                    return event
                return Event.of_job(job, event.at) if job.state == event.state else event
            if event.kind == "workflow":
                workflow = await self._repo.get_workflow(event.id)
                if workflow is not None and workflow.state == event.state:
                    return Event.of_workflow(workflow, event.at)
        except Exception as exc:
            log.warning("the rest of an event of %s %s cannot be read: %s", event.kind, event.id, one_line(exc))
        return event

    async def _answer(self, requester: str, ask: CancelAsk) -> None:
        inbox = self._inbox
        assert inbox is not None
        try:
            done = await inbox.cancel_here(ask.job)
        except Exception:
            log.exception("cancelling job %s for engine %s failed", ask.job, requester)
            done = False
        if self._open:
            self._outbox.answers.append(CancelAnswer(to=requester, ask=ask.ask, done=done))
            self._ready.set()

    # --- the listening connection ----------------------------------------------------------------------

    async def _connect(self) -> asyncpg.Connection:
        try:
            connection = await asyncpg.connect(
                self._repo.writer.url,
                timeout=self.connect_timeout,
                server_settings={"application_name": _LISTENER_NAME},
            )
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise StorageError(f"cannot listen on {self._repo.where}: {one_line(exc)}") from exc
        try:
            await connection.add_listener(CHANNEL, self._on_notification)
        except BaseException as exc:
            connection.terminate()
            if isinstance(exc, Exception):
                raise StorageError(f"cannot listen on {self._repo.where}: {one_line(exc)}") from exc
            raise
        self._connection = connection
        return connection

    async def _keep_listening(self, connection: asyncpg.Connection) -> None:
        while True:
            await self._until_lost(connection)
            self._connection = None
            connection.terminate()
            log.warning("the connection listening to other engines on %s was lost; opening it again", self._repo.where)
            connection = await self._reconnect()
            self.reconnections += 1
            assert self._inbox is not None
            self._inbox.work_queued()  # what the others sent meanwhile is lost: look for work once
            self._outbox.hello = True  # and who started meanwhile is not known here: they answer
            self._ready.set()

    async def _until_lost(self, connection: asyncpg.Connection) -> None:
        lost = asyncio.Event()
        connection.add_termination_listener(lambda _: lost.set())
        while not connection.is_closed():
            try:
                await asyncio.wait_for(lost.wait(), self.keepalive)
                return
            except TimeoutError:
                try:
                    await connection.execute("SELECT 1", timeout=self.keepalive)
                except Exception:
                    return

    async def _reconnect(self) -> asyncpg.Connection:
        """A new listening connection, tried after ``reconnect_delay`` seconds, then less and less often."""
        delay = self.reconnect_delay
        while True:
            await asyncio.sleep(delay)
            try:
                return await self._connect()
            except StorageError as exc:
                log.warning("%s; trying again in %.2f s", exc, delay)
            delay = max(min(delay * 2, self.max_reconnect_delay), delay)
