"""Ports: durable storage of jobs and workflows, with atomic claims and atomic commits, by role.

Services depend on the roles they use (:class:`JobStore`, :class:`JobQueue`, :class:`JobQueries`,
:class:`Retention`); an adapter implements :class:`JobRepository`, all of them. Every method is async
and storage-neutral: callers on other threads than the loop's are the entry points' business (see
``entrypoints.compat.threads``), not the ports'.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Literal, Protocol

import msgspec

from application.ports.schedule_store import ScheduleTick
from domain.job import Job, Progress
from domain.states import JobState
from domain.workflow import Workflow


class Guard(msgspec.Struct, frozen=True, kw_only=True):
    """A precondition on one stored job; a commit whose guard fails is rejected whole.

    ``owner``: the job's lease must still be held by this owner (late results of a lost lease are
    refused). ``states``: the job must be in one of these states (e.g. cancel only a queued job).
    """

    job_id: str
    owner: str | None = None
    states: frozenset[JobState] | None = None

    def problem(self, current: tuple[str, str | None] | None) -> str | None:
        """Why this guard does not hold for its job, stored as ``current`` (its state and lease owner, None
        when there is no such job); None when it holds. Every repository checks guards with this."""
        if current is None:
            return f"job {self.job_id} does not exist"
        state, lease_owner = current
        if self.owner is not None and lease_owner != self.owner:
            return f"job {self.job_id} is no longer leased to {self.owner}"
        if self.states is not None and state not in self.states:
            return f"job {self.job_id} is {state}"
        return None


class IdempotencyKey(msgspec.Struct, frozen=True, kw_only=True):
    """A caller's key for one submission (HTTP ``Idempotency-Key``, Python ``idempotency_key=``), stored
    with what that submission created, in the same commit.

    ``fingerprint`` stands for the request (equal requests have equal fingerprints); ``kind`` and
    ``target`` name the job or workflow it created. A key is kept as long as its target is: deleting
    the target (``forget``, ``purge``) frees the key.
    """

    key: str
    fingerprint: str
    kind: Literal["job", "workflow"]
    target: str
    created_at: float


class Commit(msgspec.Struct, kw_only=True):
    """Writes that land together or not at all: a job's outcome and the jobs it unblocks, say.

    Jobs and workflows are upserted whole (new ones inserted, known ones overwritten).
    """

    jobs: list[Job] = msgspec.field(default_factory=list)
    workflows: list[Workflow] = msgspec.field(default_factory=list)
    guard: Guard | None = None
    workflow_versions: dict[str, int] = msgspec.field(default_factory=dict)
    """Workflows this commit advances, each with the version its plan was made on: the commit is refused
    whole (``domain.errors.WorkflowChanged``) unless each stored version still is that one, and moves each
    on by one. Upserting a workflow never changes its version (a new one starts at 0)."""
    tick: ScheduleTick | None = None
    """A periodic schedule's tick fired by this commit (its job among ``jobs``): the commit is refused
    whole (``domain.errors.Conflict``) when the schedule moved on or the tick was fired already."""

    idempotency: IdempotencyKey | None = None
    """A key to store with this commit: the commit is refused whole (``domain.errors.IdempotencyKeyTaken``)
    when the key is stored already, also by a concurrent commit of another engine."""

    def __post_init__(self) -> None:
        if self.tick is not None and self.idempotency is not None:  # a tick is unique by itself
            raise ValueError("a commit fires a schedule's tick or stores an idempotency key, not both")

    def stale_version(self, stored: Mapping[str, int]) -> str | None:
        """Why this commit's plan is stale given the ``stored`` versions of its workflows (a workflow missing
        from it is gone); None when every expected version still holds. Every repository checks with this."""
        for workflow_id, version in self.workflow_versions.items():
            found = stored.get(workflow_id)
            if found != version:
                where = "gone" if found is None else f"at version {found}"
                return f"workflow {workflow_id} is {where}, not at version {version}"
        return None


class JobFilter(msgspec.Struct, frozen=True, kw_only=True):
    """Which jobs a listing returns; None means any. ``workflow_id`` matches the jobs of that workflow
    and of every workflow that replaced one of its jobs (their ``root_id``)."""

    state: JobState | None = None
    task: str | None = None
    workflow_id: str | None = None
    schedule: str | None = None
    """The jobs a periodic schedule of this name created (its ticks and its runs on request)."""
    queue: str | None = None
    """The jobs of this named queue (``Job.queue``: their ``queue``, else ``routing_key``, else default)."""


class JobPage(msgspec.Struct, frozen=True, kw_only=True):
    """One page of a listing, newest first; ``next_cursor`` is None on the last page."""

    items: list[Job]
    next_cursor: str | None = None


class StorageLifecycle(Protocol):
    """Storage that is opened before use and closed after (files, pools, locks)."""

    async def open(self) -> None: ...

    async def close(self) -> None: ...


class JobStore(Protocol):
    """Jobs and workflows stored and read back whole: what every use case needs.

    Methods that return ``X | None`` return None when no such record exists.
    """

    async def commit(self, commit: Commit) -> None:
        """Store everything in ``commit`` in one transaction, durably, before returning.

        Raises ``domain.errors.Conflict`` (and stores nothing) when the guard does not hold.
        """
        ...

    async def get(self, job_id: str) -> Job | None: ...

    async def get_many(self, job_ids: Sequence[str]) -> dict[str, Job]:
        """The jobs with these ids that exist, by id: one read for many."""
        ...

    async def get_workflow(self, workflow_id: str) -> Workflow | None: ...

    async def workflow_jobs(self, workflow_id: str) -> list[Job]:
        """Every job created so far for the workflow, in creation order."""
        ...

    async def children(self, job_id: str) -> list[Job]:
        """The jobs whose Celery parent is ``job_id`` (``options.parent_id``: the steps and callbacks it
        started, the jobs its code submitted), in the order they were stored."""
        ...

    async def idempotency_key(self, key: str) -> IdempotencyKey | None:
        """The stored idempotency key ``key`` (see :attr:`Commit.idempotency`)."""
        ...


class JobQueue(Protocol):
    """The queue side: atomic claims of due jobs, leases held while they run, and their recovery."""

    async def claim(
        self, *, owner: str, now: float, limit: int, lease_until: float, queues: Mapping[str, int] | None = None
    ) -> list[Job]:
        """Atomically take up to ``limit`` due queued jobs: highest priority first, then earliest
        ``due_at``, then first submitted. They come back STARTED, attempt counted, leased to ``owner``.

        ``queues``: only jobs of these named queues (:attr:`Job.queue`), at most ``queues[name]`` of each;
        None: any queue."""
        ...

    async def next_due_at(self, queues: Collection[str] | None = None) -> float | None:
        """The earliest ``due_at`` of any queued job (of one of ``queues``, when given), or None when none."""
        ...

    async def save_progress(self, job_id: str, owner: str, progress: Progress) -> bool:
        """Record a running job's progress; False when ``owner`` no longer holds its lease."""
        ...

    async def renew_leases(self, owner: str, job_ids: list[str], lease_until: float) -> None:
        """Extend the leases ``owner`` still holds on these jobs."""
        ...

    async def leased_jobs(self, *, expired_before: float) -> list[Job]:
        """STARTED jobs holding a lease that expired before ``expired_before`` (their worker is gone)."""
        ...


class JobQueries(Protocol):
    """Listings and counts for people and monitoring (the HTTP API, metrics)."""

    async def list_jobs(self, filter: JobFilter, *, limit: int, cursor: str | None = None) -> JobPage: ...

    async def count_by_state(self, states: Collection[str] | None = None) -> dict[str, int]:
        """Jobs per state (states with none left out); only the ``states`` given, if any: a count of the
        unfinished ones reads their index, not every finished job kept (``/ready`` asks that way)."""
        ...

    async def queue_depths(self) -> dict[str, int]:
        """Queued jobs (PENDING or RETRY) per named queue, queues with none left out."""
        ...


class Retention(Protocol):
    """Deleting finished work: one result on request, everything past its retention periodically."""

    async def forget(self, job_id: str) -> bool:
        """Delete one finished job (Celery's ``AsyncResult.forget``), and the idempotency key that created it;
        False if there was none to delete."""
        ...

    async def purge(self, finished_before: float) -> int:
        """Delete finished jobs and workflows that finished before ``finished_before``; how many went.

        A workflow goes only once all its jobs are finished and old enough; a job of a workflow that is
        kept stays with it. The idempotency keys that created what goes go with it (the keys are free again).
        """
        ...


class JobRepository(StorageLifecycle, JobStore, JobQueue, JobQueries, Retention, Protocol):
    """Where jobs and workflows live: every role above, each method atomic on its own. An adapter
    implements this whole; each service depends only on the roles it uses."""


class DispatcherStore(JobStore, JobQueue, Protocol):
    """What the dispatcher uses: the store (outcomes, workflow steps) and the queue (claims, leases)."""


class ServiceStore(JobStore, JobQueue, JobQueries, Retention, Protocol):
    """What the job service uses: the store, progress on the queue, listings and ``forget``."""
