"""Port: durable storage of jobs and workflows, with atomic claims and atomic commits."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import msgspec

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


class Commit(msgspec.Struct, kw_only=True):
    """Writes that land together or not at all: a job's outcome and the jobs it unblocks, say.

    Jobs and workflows are upserted whole (new ones inserted, known ones overwritten).
    """

    jobs: list[Job] = msgspec.field(default_factory=list)
    workflows: list[Workflow] = msgspec.field(default_factory=list)
    guard: Guard | None = None


class JobFilter(msgspec.Struct, frozen=True, kw_only=True):
    """Which jobs a listing returns; None means any. ``workflow_id`` matches the jobs of that workflow
    and of every workflow that replaced one of its jobs (their ``root_id``)."""

    state: JobState | None = None
    task: str | None = None
    workflow_id: str | None = None


class JobPage(msgspec.Struct, frozen=True, kw_only=True):
    """One page of a listing, newest first; ``next_cursor`` is None on the last page."""

    items: list[Job]
    next_cursor: str | None = None


class JobRepository(Protocol):
    """Where jobs and workflows live. Every method is atomic on its own.

    Methods that return ``X | None`` return None when no such record exists.
    """

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def commit(self, commit: Commit) -> None:
        """Store everything in ``commit`` in one transaction, durably, before returning.

        Raises ``domain.errors.Conflict`` (and stores nothing) when the guard does not hold.
        """
        ...

    def commit_from_thread(self, commit: Commit) -> bool:
        """Like :meth:`commit`, called from a thread that is not the event loop's, blocking until the
        commit is durable. Returns False, having stored nothing, when the repository cannot write
        from that thread (right now or ever): the caller then sends ``commit`` to the loop."""
        ...

    async def claim(self, *, owner: str, now: float, limit: int, lease_until: float) -> list[Job]:
        """Atomically take up to ``limit`` due queued jobs: highest priority first, then earliest
        ``due_at``, then first submitted. They come back STARTED, attempt counted, leased to ``owner``."""
        ...

    async def save_progress(self, job_id: str, owner: str, progress: Progress) -> bool:
        """Record a running job's progress; False when ``owner`` no longer holds its lease."""
        ...

    async def renew_leases(self, owner: str, job_ids: list[str], lease_until: float) -> None:
        """Extend the leases ``owner`` still holds on these jobs."""
        ...

    async def get(self, job_id: str) -> Job | None: ...

    def peek(self, job_id: str) -> Job | None:
        """Like ``get``, but blocking: a quick point read for synchronous callers."""
        ...

    def peek_many(self, job_ids: Sequence[str]) -> dict[str, Job]:
        """The jobs with these ids that exist, by id: one read for many (``ResultSet.get``), blocking."""
        ...

    def peek_children(self, job_id: str) -> list[Job]:
        """The jobs whose Celery parent is ``job_id`` (``options.parent_id``: the steps and callbacks it
        started, the jobs its code submitted), in the order they were stored; blocking."""
        ...

    async def get_workflow(self, workflow_id: str) -> Workflow | None: ...

    def peek_workflow(self, workflow_id: str) -> Workflow | None:
        """Like ``get_workflow``, but blocking, for synchronous callers."""
        ...

    async def workflow_jobs(self, workflow_id: str) -> list[Job]:
        """Every job created so far for the workflow, in creation order."""
        ...

    async def list_jobs(self, filter: JobFilter, *, limit: int, cursor: str | None = None) -> JobPage: ...

    async def next_due_at(self) -> float | None:
        """The earliest ``due_at`` of any queued job, or None when the queue is empty."""
        ...

    def peek_next_due(self) -> float | None:
        """Like :meth:`next_due_at`, blocking. A repository whose :meth:`commit_from_thread` can
        succeed answers it from any thread."""
        ...

    async def leased_jobs(self, *, expired_before: float) -> list[Job]:
        """STARTED jobs holding a lease that expired before ``expired_before`` (their worker is gone)."""
        ...

    async def count_by_state(self) -> dict[str, int]: ...

    async def forget(self, job_id: str) -> bool:
        """Delete one finished job (Celery's ``AsyncResult.forget``); False if there was none to delete."""
        ...

    async def purge(self, finished_before: float) -> int:
        """Delete finished jobs and workflows that finished before ``finished_before``; how many went.

        A workflow goes only once all its jobs are finished and old enough; a job of a workflow that is
        kept stays with it.
        """
        ...
