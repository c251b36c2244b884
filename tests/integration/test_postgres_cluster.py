"""Several engines on one PostgreSQL database tell each other things (issue 13, LISTEN/NOTIFY): work queued
through one starts at once on an idle other, a stream on one follows a job running on another, a cancel
through one reaches the engine running the job, and a dead engine's jobs are recovered by the others.

Engines run in one process, on one loop, each built by its own container as a service builds it. The
safety-net poll is set far above the bounds asserted (``POLL``), so only a notification can meet them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
import httpx
import msgspec
import pytest
from dependency_injector import providers

from adapters.event_bus import InProcessEventBus, QueueSubscription
from adapters.postgres import PostgresPeerLink
from adapters.postgres.peer_packets import CHANNEL, decode, item
from application.engine import Engine
from application.events import Event
from domain.canvas import Chain, Signature
from domain.job import Job
from domain.states import JobState
from entrypoints.container import Container
from entrypoints.http.app import create_app
from entrypoints.settings import Settings
from tests.integration import cluster_tasks
from tests.support.metrics import counted
from tests.support.postgres import empty_tables
from tests.support.waiting import eventually, stays

POLL = 30.0
"""The safety-net poll of engines whose promptness is asserted: far above every bound below."""

PROMPT = 3.0
"""How soon an idle engine must start work another engine queued (a notification takes milliseconds;
the bound leaves room for a loaded machine, and is a tenth of ``POLL``)."""


class Ran:
    """The dispatcher's trace hook: which jobs an engine took to run."""

    def __init__(self) -> None:
        self.jobs: list[str] = []

    def received(self, job: Job) -> None:
        self.jobs.append(job.id)

    def finished(self, job: Job, outcome: Any, **_: Any) -> None:
        return None


class WatchedBus(InProcessEventBus):
    """The bus, telling when someone subscribes to a key (an HTTP stream has started listening)."""

    def __init__(self) -> None:
        super().__init__()
        self.keys: set[str | None] = set()

    def subscribe(self, key: str | None = None) -> QueueSubscription:
        self.keys.add(key)
        return super().subscribe(key)


class Replica:
    """One engine of the database, as its container builds it, with the metrics a service counts."""

    def __init__(self, url: str, **settings: Any) -> None:
        self.container = Container(settings=Settings(persistence="postgres", database_url=url, **settings))
        self.bus = WatchedBus()
        self.container.bus.override(providers.Object(self.bus))
        self.engine: Engine = self.container.engine()
        self.ran = Ran()
        self.engine.dispatcher.trace = self.ran

    @property
    def link(self) -> PostgresPeerLink:
        link = self.container.peer_link()
        assert isinstance(link, PostgresPeerLink)
        return link

    def count_metrics(self) -> None:
        self.bus.add_listener(self.container.metrics().observe)

    async def start(self) -> Replica:
        await self.engine.start()
        return self


Start = Callable[..., Awaitable[Replica]]


@pytest.fixture
async def replica(postgres_url: str) -> AsyncIterator[Start]:
    """Starts engines on the test database (``POLL`` unless told); stops them all at the end."""
    await empty_tables(postgres_url)
    cluster_tasks.reset()
    started: list[Replica] = []

    async def start(**settings: Any) -> Replica:
        built = Replica(postgres_url, **{"poll_seconds": POLL, **settings})
        started.append(built)
        return await built.start()

    try:
        yield start
    finally:
        cluster_tasks.release_all()
        for built in reversed(started):
            await built.engine.stop()


async def running_on(replica: Replica, job_id: str) -> None:
    """Wait until ``job_id`` runs on ``replica`` (its code started there, under its lease)."""
    await eventually(lambda: job_id in replica.ran.jobs and job_id in cluster_tasks.STARTED, what=f"{job_id} running")
    stored = await replica.engine.jobs.get(job_id)
    assert stored.state == JobState.STARTED and stored.lease_owner == replica.engine.dispatcher.owner


async def finished(replica: Replica, job_id: str, timeout: float = 10.0) -> Job:
    """The job as stored once it finished (read from the database, not waited for through events)."""
    deadline = time.monotonic() + timeout
    while True:
        job = await replica.engine.jobs.get(job_id)
        if job.state in (JobState.SUCCESS, JobState.FAILURE, JobState.REVOKED):
            return job
        assert time.monotonic() < deadline, f"{job_id} stayed {job.state}"
        await asyncio.sleep(0.01)


async def claim_as(owner: str, replica: Replica, *, lease: float) -> Job:
    """Claim the one queued job as engine ``owner`` would, its lease ending ``lease`` seconds from now."""
    now = time.time()
    claimed = await replica.engine.repo.claim(owner=owner, now=now, limit=1, lease_until=now + lease)
    assert len(claimed) == 1
    return claimed[0]


async def terminate_backend(url: str, pid: int) -> None:
    connection = await asyncpg.connect(url)
    try:
        assert await connection.fetchval("SELECT pg_terminate_backend($1)", pid)
    finally:
        await connection.close()


async def drained(subscription: QueueSubscription, quiet: float = 0.5) -> list[Event]:
    """Every event of ``subscription`` until none came for ``quiet`` seconds."""
    events: list[Event] = []
    while (event := await subscription.next(quiet)) is not None:
        events.append(event)
    return events


class TestWorkQueuedWakesIdleEngines:
    async def test_a_job_submitted_through_a_busy_engine_starts_at_once_on_an_idle_one(self, replica: Start) -> None:
        first = await replica(max_concurrent_tasks=1)
        blocker = await first.engine.jobs.submit(Signature(task="cluster.hold", args=["busy"]))
        await running_on(first, blocker.id)  # its one slot is taken
        second = await replica(max_concurrent_tasks=1)
        submitted = time.monotonic()
        job = await first.engine.jobs.submit(Signature(task="cluster.quick", args=[7]))
        await eventually(lambda: job.id in second.ran.jobs, timeout=PROMPT, what="the idle engine starting it")
        assert time.monotonic() - submitted < PROMPT
        assert (await finished(second, job.id)).result == 7
        assert job.id not in first.ran.jobs

    async def test_a_job_submitted_through_an_engine_not_dispatching_starts_on_another(self, replica: Start) -> None:
        web = await replica()
        worker = await replica()
        await web.engine.dispatcher.stop()
        jobs = [await web.engine.jobs.submit(Signature(task="cluster.quick", args=[i])) for i in range(20)]
        await eventually(
            lambda: all(job.id in worker.ran.jobs for job in jobs), timeout=PROMPT, what="the worker starting them"
        )
        assert [(await finished(worker, job.id)).result for job in jobs] == list(range(20))

    async def test_a_burst_of_submissions_sends_a_few_notifications(self, replica: Start) -> None:
        web = await replica()
        worker = await replica()
        await web.engine.dispatcher.stop()
        jobs = await asyncio.gather(
            *(web.engine.jobs.submit(Signature(task="cluster.quick", args=[i])) for i in range(500))
        )
        await eventually(lambda: all(job.id in worker.ran.jobs for job in jobs), timeout=20, what="all 500 run")
        assert web.link.notifications < 100, f"{web.link.notifications} notifications for 500 submissions"


class TestWhoListens:
    """Nothing is relayed while nobody listens; an engine that starts is relayed to once its start
    returned; one that stops, or goes silent, is forgotten."""

    async def test_an_engine_alone_sends_no_notification_for_its_work(self, replica: Start) -> None:
        alone = await replica()
        jobs = [await alone.engine.jobs.submit(Signature(task="cluster.quick", args=[i])) for i in range(30)]
        assert [(await finished(alone, job.id)).result for job in jobs] == list(range(30))
        assert alone.link.peers == []
        assert alone.link.notifications <= 2, "only its hello (and maybe a heartbeat) were sent"

    async def test_once_a_start_returned_each_engine_knows_the_other(self, replica: Start) -> None:
        first = await replica()
        second = await replica()
        assert first.link.peers == [second.engine.dispatcher.owner]
        assert second.link.peers == [first.engine.dispatcher.owner]
        third = await replica()
        assert sorted(third.link.peers) == sorted([first.engine.dispatcher.owner, second.engine.dispatcher.owner])
        assert third.engine.dispatcher.owner in first.link.peers

    async def test_a_stopped_engine_is_forgotten_at_once_and_relaying_stops(self, replica: Start) -> None:
        first = await replica()
        second = await replica()
        await second.engine.stop()
        await eventually(lambda: first.link.peers == [], what="the bye heard")
        sent = first.link.notifications
        job = await first.engine.jobs.submit(Signature(task="cluster.quick", args=[1]))
        assert (await finished(first, job.id)).result == 1
        assert first.link.notifications - sent <= 1, "at most a heartbeat"

    async def test_a_silent_engine_is_forgotten_and_known_again_at_its_next_word(
        self, replica: Start, postgres_url: str
    ) -> None:
        watcher = Replica(postgres_url, poll_seconds=POLL)
        watcher.link.keepalive, watcher.link.peer_timeout = 0.1, 0.5
        quiet = await replica()  # its heartbeat comes every 5 s: silent for the watcher's 0.5 s
        try:
            await watcher.start()
            assert watcher.link.peers == [quiet.engine.dispatcher.owner]
            await eventually(lambda: watcher.link.peers == [], what="the silent engine forgotten")
            assert quiet.link.peers == [watcher.engine.dispatcher.owner], "the watcher beats every 0.1 s"
            await quiet.engine.jobs.submit(Signature(task="cluster.quick", args=[2], countdown=60))
            await eventually(lambda: watcher.link.peers == [quiet.engine.dispatcher.owner], what="known again")
        finally:
            await watcher.engine.stop()


class TestWhatCanWaitGoesWithWhatCannot:
    """A job started, progress and heartbeats are held a little (``linger``) for an event that ends
    something: a short job's start and end reach the others in one notification; a long one's start
    still arrives while it runs."""

    async def test_a_short_jobs_start_and_end_go_in_one_notification(self, replica: Start, postgres_url: str) -> None:
        runner = await replica()
        await replica()  # someone listens: the runner relays
        heard: list[list[tuple[str, str]]] = []

        def on_payload(_connection: object, _pid: int, _channel: str, payload: object) -> None:
            packet = decode(str(payload))
            if packet.sender == runner.engine.dispatcher.owner and packet.events:
                heard.append([(event.id, event.state) for _, event in map(item, packet.events)])

        listener = await asyncpg.connect(postgres_url)
        try:
            await listener.add_listener(CHANNEL, on_payload)
            job = await runner.engine.jobs.submit(Signature(task="cluster.quick", args=[7]))
            assert (await finished(runner, job.id)).result == 7
            await eventually(lambda: any(("SUCCESS" in dict(events).values()) for events in heard), what="relayed")
        finally:
            await listener.close()
        carrying = [events for events in heard if any(job_id == job.id for job_id, _ in events)]
        assert len(carrying) == 1, f"the job's events came in {len(carrying)} notifications: {carrying}"
        states = [state for job_id, state in carrying[0] if job_id == job.id]
        assert states[-2:] == ["STARTED", "SUCCESS"], states

    async def test_a_long_jobs_start_reaches_the_others_while_it_runs(self, replica: Start) -> None:
        runner = await replica()
        viewer = await replica()
        subscription = viewer.bus.subscribe()
        job = await runner.engine.jobs.submit(Signature(task="cluster.hold", args=["long"]))

        async def next_of_job() -> Event:
            while True:
                event = await subscription.next(PROMPT)
                assert event is not None, "nothing relayed"
                if event.id == job.id and event.state != "PENDING":
                    return event

        assert (await next_of_job()).state == "STARTED"  # the gate is still shut: it runs
        cluster_tasks.release("long")
        assert (await next_of_job()).state == "SUCCESS"


class TestTheListeningConnection:
    async def test_killed_it_is_opened_again_and_work_queued_meanwhile_starts_then(
        self, replica: Start, postgres_url: str
    ) -> None:
        web = await replica()
        worker = await replica()
        await web.engine.dispatcher.stop()
        worker.link.reconnect_delay = 1.0
        old = worker.link.listener_pid
        assert old is not None
        await terminate_backend(postgres_url, old)
        await eventually(lambda: worker.link.listener_pid is None, what="the loss noticed")
        lost = await web.engine.jobs.submit(Signature(task="cluster.quick", args=[1]))  # its NOTIFY reaches nobody
        await eventually(lambda: lost.id in worker.ran.jobs, timeout=1.0 + PROMPT, what="the job started on reconnect")
        assert worker.link.reconnections == 1 and worker.link.listener_pid not in (None, old)
        heard = await web.engine.jobs.submit(Signature(task="cluster.quick", args=[2]))  # heard again
        await eventually(lambda: heard.id in worker.ran.jobs, timeout=PROMPT, what="a NOTIFY heard again")

    async def test_while_it_stays_down_the_slow_poll_finds_the_work(self, replica: Start, postgres_url: str) -> None:
        web = await replica()
        worker = await replica(poll_seconds=1.0)
        await web.engine.dispatcher.stop()
        worker.link.reconnect_delay = 3600.0  # it does not come back during this test
        old = worker.link.listener_pid
        assert old is not None
        await terminate_backend(postgres_url, old)
        await eventually(lambda: worker.link.listener_pid is None, what="the loss noticed")
        job = await web.engine.jobs.submit(Signature(task="cluster.quick", args=[3]))
        await eventually(lambda: job.id in worker.ran.jobs, timeout=1.0 + PROMPT, what="the poll finding it")
        assert worker.link.listener_pid is None and worker.link.reconnections == 0
        assert (await finished(worker, job.id)).result == 3


def scraped(replica: Any) -> str:
    """The exposition text of what ``replica``'s metrics counted."""
    text: str = replica.container.metrics().render(running=0, states={})
    return text


class TestEventsTravel:
    async def test_a_stream_on_one_engine_follows_a_job_running_on_another_big_result_included(
        self, replica: Start
    ) -> None:
        runner = await replica()
        runner.count_metrics()
        job = await runner.engine.jobs.submit(Signature(task="cluster.report", args=["stream"]))
        await running_on(runner, job.id)
        viewer = await replica()
        # The viewer's HTTP service on this loop (Litestar's test client would run it on a thread of its own
        # and block this loop, where the runner runs, for the length of each request).
        app = create_app(viewer.container)  # counting the viewer's metrics, as a service does
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
            # The job is let go once the stream has read it (its first event): released as soon as the stream
            # subscribed, the job could end before that read, and the stream would rightly send only its end.
            service = viewer.engine.jobs
            read = asyncio.Event()
            reads = service.get

            async def get_and_tell(job_id: str) -> Job:
                found = await reads(job_id)
                read.set()
                return found

            service.get = get_and_tell  # type: ignore[method-assign]
            stream = asyncio.create_task(client.get(f"/jobs/{job.id}/events"))
            await asyncio.wait_for(read.wait(), 20)
            cluster_tasks.release("stream")
            response = await asyncio.wait_for(stream, 20)
            frames = [frame for frame in response.text.split("\r\n\r\n") if frame]
            kinds = [frame.split("\r\n")[1] for frame in frames]  # each frame: id, event, data
            data = [msgspec.json.decode(frame.split("\r\ndata: ", 1)[1]) for frame in frames]
            assert kinds == ["event: state", "event: progress", "event: progress", "event: progress", "event: state"]
            assert data[0]["state"] == "STARTED"
            assert [body["progress"]["meta"]["done"] for body in data[1:4]] == [0, 1, 2]
            assert data[4]["state"] == "SUCCESS" and data[4]["result"] == "x" * cluster_tasks.BIG
            metrics = (await client.get("/metrics")).text
        # the viewer counts none of the runner's events
        assert counted(metrics, "geekblog_jobs_finished_total") == {}
        assert counted(metrics, "geekblog_jobs_submitted_total") == {}
        text = scraped(runner)
        assert counted(text, "geekblog_jobs_finished_total") == {(("state", "SUCCESS"), ("task", "cluster.report")): 1}
        assert counted(text, "geekblog_jobs_submitted_total") == {(("task", "cluster.report"),): 1}

    async def test_a_workflow_run_on_one_engine_is_followed_on_another(self, replica: Start) -> None:
        runner = await replica()
        viewer = await replica()
        await viewer.engine.dispatcher.stop()
        canvas = Chain(steps=[Signature(task="cluster.quick", args=[5]), Signature(task="cluster.big")])
        workflow = await runner.engine.jobs.submit_canvas(canvas)
        watched = viewer.engine.bus.subscribe(workflow.id)
        try:
            done = await viewer.engine.jobs.wait(workflow.id, timeout=10)  # woken by the relayed terminal event
            assert done.state == JobState.SUCCESS and done.result == "5" * cluster_tasks.BIG
            events = await drained(watched)
        finally:
            watched.close()
        last = [event for event in events if event.terminal][-1]
        assert (last.kind, last.state, last.result) == ("workflow", "SUCCESS", "5" * cluster_tasks.BIG)
        assert {event.id for event in events if event.kind == "job"} == {
            job.id for job in await runner.engine.jobs.workflow_jobs(workflow.id)
        }

    async def test_project_events_travel(self, replica: Start) -> None:
        runner = await replica()
        viewer = await replica()
        published_here: list[Event] = []
        viewer.bus.add_listener(published_here.append)
        pipeline = runner.container.pipeline()
        project = await pipeline.create("Durable queues", audience=None, tone=None, sections=None)
        watched = viewer.engine.bus.subscribe(project.id)
        try:
            await pipeline.started(project.id, "workflow-1")
            await pipeline.failed(project.id, "stopped by the test")
            first = await watched.next(PROMPT)
            second = await watched.next(PROMPT)
        finally:
            watched.close()
        assert first is not None and second is not None
        assert [(event.kind, event.state) for event in (first, second)] == [
            ("project", "PLANNING"),
            ("project", "FAILED"),
        ]
        assert second.progress is not None and second.progress.meta == {
            "stage": "failed",
            "error": "stopped by the test",
        }
        assert published_here == []  # delivered to subscribers, not published again


class TestCancelReachesTheOwner:
    async def test_a_cancel_through_one_engine_stops_the_task_running_on_another(self, replica: Start) -> None:
        runner = await replica()
        runner.count_metrics()
        other = await replica()
        other.count_metrics()
        job = await runner.engine.jobs.submit(Signature(task="cluster.hold", args=["never"]))
        await running_on(runner, job.id)
        on_runner, on_other = runner.engine.bus.subscribe(job.id), other.engine.bus.subscribe(job.id)
        try:
            asked = time.monotonic()
            revoked = await other.engine.jobs.cancel(job.id)
            assert time.monotonic() - asked < other.engine.peers.cancel_timeout  # answered, no fallback
            assert revoked.state == JobState.REVOKED  # stored before the cancel returned
            assert job.id in cluster_tasks.CANCELLED  # its code was stopped on the runner
            stored = await runner.engine.jobs.get(job.id)
            assert stored.state == JobState.REVOKED and stored.error is not None
            assert stored.error.type == "TaskRevokedError" and stored.lease_owner is None
            runner_events, other_events = await drained(on_runner), await drained(on_other)
        finally:
            on_runner.close()
            on_other.close()
        assert [event.state for event in runner_events if event.terminal] == ["REVOKED"]
        assert [event.state for event in other_events if event.terminal] == ["REVOKED"]
        assert counted(scraped(runner), "geekblog_jobs_finished_total") == {
            (("state", "REVOKED"), ("task", "cluster.hold")): 1
        }
        assert counted(scraped(other), "geekblog_jobs_finished_total") == {}

    async def test_revoke_without_terminate_leaves_it_running_there(self, replica: Start) -> None:
        runner = await replica()
        other = await replica()
        job = await runner.engine.jobs.submit(Signature(task="cluster.hold", args=["finish"]))
        await running_on(runner, job.id)
        assert (await other.engine.jobs.cancel(job.id, terminate=False)).state == JobState.STARTED
        cluster_tasks.release("finish")
        assert (await finished(runner, job.id)).state == JobState.SUCCESS
        assert job.id not in cluster_tasks.CANCELLED

    async def test_an_owner_that_does_not_answer_is_given_up_on_after_a_bounded_wait(self, replica: Start) -> None:
        alone = await replica()
        await alone.engine.dispatcher.stop()
        alone.engine.peers.cancel_timeout = 0.5
        silent = await alone.engine.jobs.submit(Signature(task="cluster.quick", args=[1]))
        await claim_as("gone-engine", alone, lease=600)
        asked = time.monotonic()
        revoked = await alone.engine.jobs.cancel(silent.id)
        waited = time.monotonic() - asked
        assert revoked.state == JobState.REVOKED and 0.5 <= waited < 0.5 + PROMPT
        expired = await alone.engine.jobs.submit(Signature(task="cluster.quick", args=[2]))
        await claim_as("gone-engine", alone, lease=-1)
        asked = time.monotonic()
        assert (await alone.engine.jobs.cancel(expired.id)).state == JobState.REVOKED
        assert time.monotonic() - asked < 0.5  # the engine of an expired lease is not asked


class TestADeadEnginesJobsAreRecovered:
    async def test_its_leased_job_runs_again_on_another_within_a_lease_and_a_poll(self, replica: Start) -> None:
        lease, poll = 1.0, 0.5
        doomed = await replica(lease_seconds=lease, poll_seconds=poll)
        survivor = await replica(lease_seconds=lease, poll_seconds=poll)
        job = await doomed.engine.jobs.submit(Signature(task="cluster.hold", args=["again"]))
        await running_on(doomed, job.id)
        # Alive, it keeps its lease (renewed every third of it) and nobody takes the job from it.
        await stays(lambda: job.id not in survivor.ran.jobs, 3 * lease, what="the job left to its live engine")
        await doomed.engine.stop()  # stops renewing; its job stays STARTED, leased to it, as after a crash
        assert (await survivor.engine.jobs.get(job.id)).lease_owner == doomed.engine.dispatcher.owner
        stopped = time.monotonic()
        await eventually(lambda: job.id in survivor.ran.jobs, timeout=lease + poll + PROMPT, what="the recovery")
        assert time.monotonic() - stopped < lease + poll + PROMPT
        cluster_tasks.release("again")
        done = await finished(survivor, job.id)
        assert done.state == JobState.SUCCESS and done.attempts == 2 and done.options.redelivered
