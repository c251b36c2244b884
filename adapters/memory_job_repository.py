"""The in-memory job repository: the same behaviour as SQLite, nothing durable; for tests and ephemeral use."""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Collection, Mapping, Sequence

import msgspec

from application.ports import Commit, IdempotencyKey, JobFilter, JobPage, JobRepository
from application.ports.schedule_store import ScheduleStore, ScheduleTick
from domain.errors import Conflict, IdempotencyKeyTaken, NotStorable, WorkflowChanged
from domain.job import Job, Progress
from domain.schedule import Schedule
from domain.states import QUEUED_STATES, JobState, is_terminal
from domain.workflow import Workflow

_json_encoder = msgspec.json.Encoder()
_json_decoder = msgspec.json.Decoder()


class InMemoryJobRepository(JobRepository):
    """Jobs and workflows in dicts. Every method runs without awaiting, so each is atomic on the loop."""

    def __init__(self) -> None:
        self._jobs: dict[str, Job] = {}
        self._seq: dict[str, int] = {}
        self._workflows: dict[str, Workflow] = {}
        self._workflow_jobs: dict[str, list[str]] = {}
        self._children: dict[str, list[str]] = {}
        self._queue: list[tuple[int, float, int, str]] = []  # (-priority, due_at, seq, id); stale entries skipped
        self._holding: dict[str, set[str]] = {}  # concurrency key -> the STARTED jobs with it
        self._next_start: dict[str, float] = {}  # rate-limited task -> when the next of its jobs may start
        self._counter = itertools.count(1)
        self.schedules: dict[str, Schedule] = {}
        """The schedules of :class:`InMemoryScheduleStore` (a commit's tick advances them)."""
        self.ticks: dict[tuple[str, float], str] = {}
        """Fired (schedule, tick) pairs and their job ids."""
        self._keys: dict[str, IdempotencyKey] = {}

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def commit(self, commit: Commit) -> None:
        for job in commit.jobs:  # what SQLite could not store is refused here too, before anything changes
            _storable(job.result)
            _storable(job.priority)
        if commit.guard is not None:
            current = self._jobs.get(commit.guard.job_id)
            problem = commit.guard.problem(None if current is None else (current.state, current.lease_owner))
            if problem is not None:
                raise Conflict(problem)
        versions = {wid: found.version for wid in commit.workflow_versions if (found := self._workflows.get(wid))}
        stale = commit.stale_version(versions)
        if stale is not None:
            raise WorkflowChanged(stale)
        if commit.idempotency is not None and commit.idempotency.key in self._keys:
            raise IdempotencyKeyTaken(commit.idempotency.key)
        if commit.tick is not None:
            self._fire(commit.tick)
        if commit.idempotency is not None:
            self._keys[commit.idempotency.key] = commit.idempotency
        for workflow in commit.workflows:
            stored = self._workflows.get(workflow.id)
            version = 0 if stored is None else stored.version
            self._workflows[workflow.id] = msgspec.structs.replace(workflow, version=version)
        for workflow_id, version in commit.workflow_versions.items():
            self._workflows[workflow_id] = msgspec.structs.replace(self._workflows[workflow_id], version=version + 1)
        for job in commit.jobs:
            self._put(job)

    def _fire(self, tick: ScheduleTick) -> None:
        if (tick.schedule, tick.tick) in self.ticks:
            raise Conflict(f"schedule {tick.schedule!r} fired its tick {tick.tick} already")
        if tick.revision is not None:
            stored = self.schedules.get(tick.schedule)
            if stored is None or stored.revision != tick.revision:
                raise Conflict(f"schedule {tick.schedule!r} changed since its tick {tick.tick} was planned")
            self.schedules[tick.schedule] = msgspec.structs.replace(
                stored, next_due_at=tick.next_due_at, revision=tick.new_revision, last_tick=tick.tick
            )
        self.ticks[(tick.schedule, tick.tick)] = tick.job_id

    def commit_from_thread(self, commit: Commit) -> bool:
        return False  # its state belongs to the loop: commits from other threads go through the loop

    def _put(self, job: Job) -> None:
        if isinstance(job.result, (list, tuple, dict)):  # kept as storage would give it back: JSON
            job = msgspec.structs.replace(job, result=_json_decoder.decode(_json_encoder.encode(job.result)))
        if job.id not in self._seq:
            self._seq[job.id] = next(self._counter)
            if job.options.parent_id is not None:
                self._children.setdefault(job.options.parent_id, []).append(job.id)
            if job.workflow_id is not None:
                self._workflow_jobs.setdefault(job.workflow_id, []).append(job.id)
        previous = self._jobs.get(job.id)
        if previous is not None and previous.concurrency is not None:
            self._holding.get(previous.concurrency[0], set()).discard(job.id)
        if job.state == JobState.STARTED and job.concurrency is not None:
            self._holding.setdefault(job.concurrency[0], set()).add(job.id)
        self._jobs[job.id] = job
        if job.state in QUEUED_STATES:
            heapq.heappush(self._queue, (-job.priority, job.due_at, self._seq[job.id], job.id))

    async def claim(
        self, *, owner: str, now: float, limit: int, lease_until: float, queues: Mapping[str, int] | None = None
    ) -> list[Job]:
        claimed: list[Job] = []
        deferred: list[tuple[int, float, int, str]] = []
        room = None if queues is None else dict(queues)
        while self._queue and len(claimed) < limit:
            entry = heapq.heappop(self._queue)
            if not self._is_live(entry):
                continue
            job = self._jobs[entry[3]]
            if job.due_at > now or (room is not None and room.get(job.queue, 0) <= 0) or self._blocked(job):
                deferred.append(entry)
                continue
            interval = job.rate_interval
            if interval is not None:
                if self._next_start.get(job.task, now) > now:
                    deferred.append(entry)
                    continue
                self._next_start[job.task] = now + interval
            if room is not None:
                room[job.queue] -= 1
            started = job.started(owner=owner, now=now, lease_until=lease_until)
            self._put(started)
            claimed.append(started)
        for entry in deferred:
            heapq.heappush(self._queue, entry)
        return claimed

    async def save_progress(self, job_id: str, owner: str, progress: Progress) -> bool:
        _storable(progress.meta)
        job = self._jobs.get(job_id)
        if job is None or job.lease_owner != owner:
            return False
        self._jobs[job_id] = msgspec.structs.replace(job, progress=progress)
        return True

    async def renew_leases(self, owner: str, job_ids: list[str], lease_until: float) -> None:
        for job_id in job_ids:
            job = self._jobs.get(job_id)
            if job is not None and job.lease_owner == owner:
                self._jobs[job_id] = msgspec.structs.replace(job, lease_expires_at=lease_until)

    async def get(self, job_id: str) -> Job | None:
        return self._jobs.get(job_id)

    def peek(self, job_id: str) -> Job | None:
        return self._jobs.get(job_id)

    async def get_many(self, job_ids: Sequence[str]) -> dict[str, Job]:
        return self.peek_many(job_ids)

    def peek_many(self, job_ids: Sequence[str]) -> dict[str, Job]:
        return {job_id: job for job_id in job_ids if (job := self._jobs.get(job_id)) is not None}

    async def children(self, job_id: str) -> list[Job]:
        return self.peek_children(job_id)

    def peek_children(self, job_id: str) -> list[Job]:
        return [self._jobs[child] for child in self._children.get(job_id, []) if child in self._jobs]

    async def get_workflow(self, workflow_id: str) -> Workflow | None:
        return self._workflows.get(workflow_id)

    async def idempotency_key(self, key: str) -> IdempotencyKey | None:
        return self._keys.get(key)

    def _free_keys(self, kind: str, targets: Collection[str]) -> None:
        """Delete the idempotency keys that created these jobs or workflows (deleted now)."""
        if targets and self._keys:
            gone = set(targets)
            self._keys = {key: held for key, held in self._keys.items() if held.kind != kind or held.target not in gone}

    def peek_workflow(self, workflow_id: str) -> Workflow | None:
        return self._workflows.get(workflow_id)

    async def workflow_jobs(self, workflow_id: str) -> list[Job]:
        return [self._jobs[job_id] for job_id in self._workflow_jobs.get(workflow_id, [])]

    async def list_jobs(self, filter: JobFilter, *, limit: int, cursor: str | None = None) -> JobPage:
        before = int(cursor) if cursor else None
        ordered = sorted(self._jobs.values(), key=lambda job: self._seq[job.id], reverse=True)
        items: list[Job] = []
        for job in ordered:
            seq = self._seq[job.id]
            if before is not None and seq >= before:
                continue
            if filter.state is not None and job.state != filter.state:
                continue
            if filter.task is not None and job.task != filter.task:
                continue
            if filter.workflow_id is not None and filter.workflow_id not in (job.workflow_id, job.root_id):
                continue
            if filter.schedule is not None and job.options.schedule != filter.schedule:
                continue
            if filter.queue is not None and job.queue != filter.queue:
                continue
            items.append(job)
            if len(items) > limit:
                break
        more = len(items) > limit
        items = items[:limit]
        return JobPage(items=items, next_cursor=str(self._seq[items[-1].id]) if more and items else None)

    async def next_due_at(self, queues: Collection[str] | None = None) -> float | None:
        live = [entry for entry in self._queue if self._is_live(entry)]
        if len(live) != len(self._queue):
            self._queue = live
            heapq.heapify(self._queue)
        return min(
            (
                self._may_start_at(self._jobs[entry[3]])
                for entry in live
                if (queues is None or self._jobs[entry[3]].queue in queues) and not self._blocked(self._jobs[entry[3]])
            ),
            default=None,
        )

    def _may_start_at(self, job: Job) -> float:
        """When a queued job may start: its due time, or later when its task's rate limit says so."""
        if job.rate_interval is None:
            return job.due_at
        return max(job.due_at, self._next_start.get(job.task, job.due_at))

    def _blocked(self, job: Job) -> bool:
        """Whether ``job``'s concurrency key is held by as many STARTED jobs as its limit allows."""
        control = job.concurrency
        return control is not None and len(self._holding.get(control[0], ())) >= control[1]

    async def queue_depths(self) -> dict[str, int]:
        depths: dict[str, int] = {}
        for job in self._jobs.values():
            if job.state in QUEUED_STATES:
                depths[job.queue] = depths.get(job.queue, 0) + 1
        return depths

    def _is_live(self, entry: tuple[int, float, int, str]) -> bool:
        job = self._jobs.get(entry[3])
        return job is not None and job.state in QUEUED_STATES and (-job.priority, job.due_at) == entry[:2]

    async def leased_jobs(self, *, expired_before: float) -> list[Job]:
        return [
            job
            for job in sorted(self._jobs.values(), key=lambda j: self._seq[j.id])
            if job.state == JobState.STARTED
            and job.lease_owner is not None
            and job.lease_expires_at is not None
            and job.lease_expires_at < expired_before
        ]

    async def forget(self, job_id: str) -> bool:
        job = self._jobs.get(job_id)
        if job is None or not is_terminal(job.state):
            return False
        del self._jobs[job_id]
        del self._seq[job_id]
        if job.workflow_id is not None and job_id in self._workflow_jobs.get(job.workflow_id, []):
            self._workflow_jobs[job.workflow_id].remove(job_id)
        self._free_keys("job", [job_id])
        return True

    async def purge(self, finished_before: float) -> int:
        def old(finished_at: float | None, state: JobState) -> bool:
            return is_terminal(state) and finished_at is not None and finished_at < finished_before

        gone_workflows = [
            workflow.id
            for workflow in self._workflows.values()
            if old(workflow.finished_at, workflow.state)
            and all(
                old(self._jobs[job_id].finished_at, self._jobs[job_id].state)
                for job_id in self._workflow_jobs.get(workflow.id, [])
            )
        ]
        for workflow_id in gone_workflows:
            del self._workflows[workflow_id]
            self._workflow_jobs.pop(workflow_id, None)
        gone_jobs = [
            job.id
            for job in self._jobs.values()
            if old(job.finished_at, job.state) and (job.workflow_id is None or job.workflow_id not in self._workflows)
        ]
        for job_id in gone_jobs:
            del self._jobs[job_id]
            del self._seq[job_id]
        for key in [key for key, job_id in self.ticks.items() if key[1] < finished_before and job_id not in self._jobs]:
            del self.ticks[key]
        self._free_keys("workflow", gone_workflows)
        self._free_keys("job", gone_jobs)
        return len(gone_jobs) + len(gone_workflows)

    async def count_by_state(self, states: Collection[str] | None = None) -> dict[str, int]:
        counts: dict[str, int] = {}
        for job in self._jobs.values():
            if states is None or job.state.value in states:
                counts[job.state.value] = counts.get(job.state.value, 0) + 1
        return counts


class InMemoryScheduleStore(ScheduleStore):
    """Schedules kept by an in-memory job repository, whose commits fire their ticks."""

    def __init__(self, repo: InMemoryJobRepository) -> None:
        self._repo = repo

    async def add(self, schedule: Schedule) -> bool:
        if schedule.name in self._repo.schedules:
            return False
        self._repo.schedules[schedule.name] = schedule
        return True

    async def replace(self, schedule: Schedule, *, revision: str) -> bool:
        stored = self._repo.schedules.get(schedule.name)
        if stored is None or stored.revision != revision:
            return False
        self._repo.schedules[schedule.name] = schedule
        return True

    async def get(self, name: str) -> Schedule | None:
        return self._repo.schedules.get(name)

    async def list_schedules(self) -> list[Schedule]:
        return [self._repo.schedules[name] for name in sorted(self._repo.schedules)]

    async def delete(self, name: str) -> bool:
        if self._repo.schedules.pop(name, None) is None:
            return False
        for key in [key for key in self._repo.ticks if key[0] == name]:
            del self._repo.ticks[key]
        return True

    async def next_schedule_due(self) -> float | None:
        return min((s.next_due_at for s in self._repo.schedules.values() if s.next_due_at is not None), default=None)

    async def due_schedules(self, now: float, limit: int) -> list[Schedule]:
        due = [s for s in self._repo.schedules.values() if s.next_due_at is not None and s.next_due_at <= now]
        return sorted(due, key=lambda s: (s.next_due_at or 0.0, s.name))[: max(limit, 0)]


_INT64 = range(-(2**63), 2**63)


def _storable(value: object) -> None:
    """Raise :class:`NotStorable` for what the SQLite repository could not store: a value its JSON
    encoder refuses, or an integer column past 64 bits."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value not in _INT64:
            raise NotStorable("an integer outside the 64-bit signed range cannot be stored")
        return
    if value is None or isinstance(value, (str, float, bool)):
        return
    try:
        _json_encoder.encode(value)
    except (TypeError, ValueError, OverflowError, msgspec.EncodeError) as exc:
        raise NotStorable(f"cannot be encoded as JSON: {exc}") from None
