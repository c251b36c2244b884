"""Celery-style calls from plain threads: submit, read and wait without being on the engine's loop.

Celery's API is synchronous: a sync task running in the engine's thread pool calls ``.delay()`` and
``.get()``, and ``AsyncResult.state`` is a property even in async code. The application's ports are
all async, for the loop; this bridge is where blocking callers meet them. A repository may offer
:class:`BlockingAccess` (blocking reads, and commits on the caller's thread): then a thread's
``.delay()`` commits on that thread and only tells the loop, and reads never wait for the loop. The
composition root says which repositories offer it: SQLite (reads and commits on the caller's thread),
memory (reads), PostgreSQL (reads, on a loop and a thread of the adapter's own; commits go through the
loop). Without it every call from a thread goes through the loop, and a blocking read on the loop
itself is refused with a clear error.
"""

from __future__ import annotations

import asyncio
import collections
import threading
from collections.abc import Coroutine, Sequence
from typing import Any, Protocol, TypeVar

from application.events import Event
from application.idempotency import reused_in_use
from application.job_service import EngineStopped, JobService, Snapshot
from application.ports import Commit, EventBus, Starter
from domain.canvas import Signature
from domain.errors import NotFound
from domain.job import Job
from domain.states import is_terminal
from domain.workflow import Lineage, Workflow

T = TypeVar("T")


class BlockingAccess(Protocol):
    """What a repository may offer callers on any thread: point reads, and a commit on that thread."""

    def commit_from_thread(self, commit: Commit) -> bool:
        """Commit on the calling thread, blocking until it is durable; False (nothing stored) when the
        repository cannot write from that thread: the caller then sends the commit through the loop."""
        ...

    def peek(self, job_id: str) -> Job | None: ...

    def peek_many(self, job_ids: Sequence[str]) -> dict[str, Job]: ...

    def peek_children(self, job_id: str) -> list[Job]: ...

    def peek_workflow(self, workflow_id: str) -> Workflow | None: ...


class NoBlockingAccess(RuntimeError):
    """A synchronous read was asked on the engine's loop, and the storage cannot read without awaiting."""


class ThreadBridge:
    """The engine's job service for blocking callers. An :class:`~application.ports.EngineHooks` of the
    engine: it learns the loop when the engine starts, and wakes every waiting thread when it stops."""

    def __init__(
        self, *, jobs: JobService, bus: EventBus, starter: Starter | None, access: BlockingAccess | None
    ) -> None:
        self._jobs = jobs
        self._starter = starter
        self._access = access
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiters: dict[str, list[_Waiter]] = {}
        self._waiters_lock = threading.Lock()  # waiting threads register themselves
        self._closed = True
        self._unannounced: collections.deque[tuple[Job, Job | None]] = collections.deque()
        self._announce_lock = threading.Lock()
        self._announce_scheduled = False
        bus.add_listener(self._wake_waiters, relayed=True)  # a job may run on another engine

    # --- the engine's lifetime -------------------------------------------------------------------------

    def engine_started(self) -> None:
        """Threads may wait again; called on the engine's loop, which calls from threads go to."""
        self._loop = asyncio.get_running_loop()
        with self._waiters_lock:
            self._closed = False

    def use_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        """Send calls from threads to ``loop``: the loop of an engine used without being started (its
        storage opened to submit jobs that a worker runs later)."""
        self._loop = loop

    def engine_stopped(self) -> None:
        """Wake every waiting thread (it raises :class:`EngineStopped`), as does every later wait until the
        engine starts again."""
        with self._waiters_lock:
            self._closed = True
            waiters, self._waiters = self._waiters, {}
        for waiting in waiters.values():
            for waiter in waiting:
                waiter.stopped = True
                waiter.event.set()

    @property
    def waiting_threads(self) -> int:
        """Threads blocked in :meth:`wait` on a job or workflow not finished yet."""
        with self._waiters_lock:
            return sum(len(waiters) for waiters in self._waiters.values())

    # --- submitting --------------------------------------------------------------------------------------

    def submit(self, signature: Signature, *, lineage: Lineage | None = None) -> Job:
        """``JobService.submit`` for a caller on another thread than the engine's loop, blocking.

        The job is committed on the caller's thread when the repository can do that (claimed by the
        dispatcher in that commit when a slot is free), and the loop is only told about it, with no
        waiting for two thread switches; otherwise it goes through the loop.
        """
        job = self._jobs.new_job(signature, lineage=lineage)
        if signature.id is not None and (pending := self._check_reusable(job)) is not None:
            return pending  # the same call under its unfinished id: stored once
        access, starter = self._access, self._starter
        claimed = starter.claim_new(job) if starter is not None and access is not None else None
        stored = False
        try:
            stored = access is not None and access.commit_from_thread(Commit(jobs=[claimed or job]))
        finally:
            if not stored and claimed is not None and starter is not None:
                starter.unclaim(claimed)
        if not stored:  # stored by the loop, as a submission there: claimed in its commit when a slot is free
            self._on_loop(self._jobs.queue_new(job))
            return job
        self._announce_later(job, claimed)
        return job

    def _check_reusable(self, call: Job) -> Job | None:
        access = self._access
        if access is None:
            return self._on_loop(self._jobs.check_reusable([call.id], call=call))
        jobs = list(access.peek_many([call.id]).values())
        workflows = {job.workflow_id: access.peek_workflow(job.workflow_id) for job in jobs if job.workflow_id}
        return reused_in_use(jobs, workflows, call=call)

    def _announce_later(self, job: Job, claimed: Job | None) -> None:
        """Tell the loop about a stored job. One wake-up of the loop announces every job submitted until
        it runs: waking it costs more than a commit, since it then competes with this thread for the GIL."""
        self._unannounced.append((job, claimed))
        with self._announce_lock:
            if self._announce_scheduled:
                return
            self._announce_scheduled = True
        try:
            self._engine_loop().call_soon_threadsafe(self._announce)
        except RuntimeError:  # the loop is closed: the job waits in storage for the next start
            with self._announce_lock:
                self._announce_scheduled = False

    def _announce(self) -> None:
        with self._announce_lock:
            self._announce_scheduled = False
        submitted: list[tuple[Job, Job | None]] = []
        while self._unannounced:
            submitted.append(self._unannounced.popleft())
        self._jobs.announce(submitted)

    # --- reading -----------------------------------------------------------------------------------------

    def peek(self, ident: str) -> Snapshot:
        """The job or the workflow with this id, now (``NotFound`` if neither exists); blocking."""
        access = self._access
        if access is None:
            return self._read(self._jobs.find(ident))
        job = access.peek(ident)
        if job is not None:
            return job
        workflow = access.peek_workflow(ident)
        if workflow is not None:
            return workflow
        raise NotFound("job or workflow", ident)

    def peek_children(self, job_id: str) -> list[Job]:
        """The jobs ``job_id`` started (its Celery children); blocking."""
        if self._access is None:
            return self._read(self._jobs.children(job_id))
        return self._access.peek_children(job_id)

    def peek_jobs(self, job_ids: Sequence[str]) -> dict[str, Job]:
        """The jobs among ``job_ids`` that exist, by id, in one read; blocking."""
        if self._access is None:
            return self._read(self._jobs.get_many(job_ids))
        return self._access.peek_many(job_ids)

    def _read(self, read: Coroutine[Any, Any, T]) -> T:
        try:
            on_loop = asyncio.get_running_loop() is self._engine_loop()
        except RuntimeError:
            on_loop = False
        if on_loop:
            read.close()
            raise NoBlockingAccess(
                "this storage cannot be read without awaiting: on the event loop, await the result "
                "(`await handle.get()`, `await handle`) instead of reading `.state` or `.result`"
            )
        return self._on_loop(read)

    def _on_loop(self, call: Coroutine[Any, Any, T]) -> T:
        try:
            loop = self._engine_loop()
        except RuntimeError:
            call.close()  # never scheduled: no "coroutine was never awaited" warning on top of the error
            raise
        return asyncio.run_coroutine_threadsafe(call, loop).result()

    def _engine_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            raise RuntimeError("the engine has not started")
        return self._loop

    # --- waiting -----------------------------------------------------------------------------------------

    def wait(self, ident: str, timeout: float | None) -> Snapshot:
        """``JobService.wait`` for a caller on another thread than the engine's loop, blocking.

        Reads the state and, while the job or workflow has not finished, waits on a
        ``threading.Event`` that its terminal event sets. The waiter is registered from this thread,
        under a lock, before the second read: a terminal event published before the registration
        committed its state before that read, so nothing is missed.
        """
        snapshot = self.peek(ident)
        if is_terminal(snapshot.state):
            return snapshot
        waiter = _Waiter()
        with self._waiters_lock:
            if self._closed:
                raise EngineStopped(f"the engine stopped before {ident} finished")
            self._waiters.setdefault(ident, []).append(waiter)
        try:
            snapshot = self.peek(ident)
            if is_terminal(snapshot.state):
                return snapshot
            if not waiter.event.wait(timeout):
                raise TimeoutError(f"{ident} did not finish within {timeout} s")
            if waiter.stopped:
                raise EngineStopped(f"the engine stopped before {ident} finished")
            return self.peek(ident)
        finally:
            self._unwatch(ident, waiter)

    def _unwatch(self, ident: str, waiter: _Waiter) -> None:
        with self._waiters_lock:
            waiters = self._waiters.get(ident)
            if waiters is not None and waiter in waiters:
                waiters.remove(waiter)
                if not waiters:
                    del self._waiters[ident]

    def _wake_waiters(self, event: Event) -> None:
        if event.terminal and self._waiters:
            with self._waiters_lock:
                waiters = self._waiters.pop(event.id, ())
            for waiter in waiters:
                waiter.event.set()


class _Waiter:
    """A thread blocked in :meth:`ThreadBridge.wait`; the loop sets ``event``."""

    __slots__ = ("event", "stopped")

    def __init__(self) -> None:
        self.event = threading.Event()
        self.stopped = False
