"""Request and response bodies of the HTTP API, as msgspec Structs (documented in the OpenAPI schema)."""

from __future__ import annotations

import inspect
import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from application.health import Readiness as HealthReport
from application.registry import TaskDefinition
from domain.canvas import Signature
from domain.job import ErrorInfo, Job, Progress
from domain.project import Plan, Project, ProjectStatus
from domain.states import JobState
from domain.workflow import Workflow
from entrypoints.http.canvas_json import canvas_to_json
from entrypoints.http.options import JobOptions, expires_at

# A page cursor (a next_cursor), as a query parameter: ASCII digits only, at most 18 of them.
CURSOR_PATTERN = "^[0-9]{1,18}$"
CURSOR = re.compile(CURSOR_PATTERN)  # used with fullmatch: no trailing newline either

# Some character that is not whitespace to str.strip() (str.isspace). Spelled out, as ``\S`` differs
# between Python (\x1c-\x1f, \x85 are spaces) and the ECMA-262 regular expressions of JSON Schema (\ufeff is).
NOT_BLANK = r"[^\u0009-\u000d\u001c-\u0020\u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"

# Times are ISO 8601 strings, documented as ``format: date-time``; states as the enum of their values.
DateTime = Annotated[str, Meta(extra_json_schema={"extra": {"format": "date-time"}})]
JobStateName = Annotated[str, Meta(extra_json_schema={"extra": {"enum": [state.value for state in JobState]}})]
ProjectStatusName = Annotated[
    str, Meta(extra_json_schema={"extra": {"enum": [status.value for status in ProjectStatus]}})
]

TaskName = Annotated[str, Meta(min_length=1, max_length=200, description="A registered task name, e.g. geekblog.add")]


class JobSubmission(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """``POST /jobs``: run a registered task with JSON arguments."""

    task: TaskName
    args: list[Any] = msgspec.field(default_factory=list)
    kwargs: dict[str, Any] = msgspec.field(default_factory=dict)
    options: JobOptions = msgspec.field(default_factory=JobOptions)

    def signature(self, now: float) -> Signature:
        """The call this body asks for; ``now`` (the engine's clock) anchors an ``expires`` in seconds."""
        eta = self.options.eta
        if eta is not None and eta.tzinfo is None:
            eta = eta.replace(tzinfo=UTC)
        return Signature(
            task=self.task,
            args=self.args,
            kwargs=self.kwargs,
            countdown=self.options.countdown,
            eta=eta.timestamp() if eta is not None else None,
            expires=expires_at(self.options.expires, now),
            priority=self.options.priority,
            max_retries=self.options.max_retries,
            time_limit=self.options.time_limit,
            queue=self.options.queue,
            routing_key=self.options.routing_key,
            concurrency_key=self.options.concurrency_key,
            concurrency_limit=self.options.concurrency_limit,
        )


class WorkflowSubmission(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """``POST /workflows``: a canvas, where a canvas C is one of
    ``{"task": name, "args": [...], "kwargs": {...}, "immutable": bool, "options": {...}}``,
    ``{"chain": [C, ...]}``, ``{"group": [C, ...]}`` or ``{"chord": {"header": [C, ...], "body": C}}``."""

    canvas: Annotated[dict[str, Any], Meta(description="The canvas (see the body's description)")]


class JobOut(msgspec.Struct, kw_only=True):
    """A job: one run of a task. Times are ISO 8601 UTC."""

    id: str
    task: str
    state: JobStateName
    args: list[Any]
    kwargs: dict[str, Any]
    result: Any
    error: ErrorInfo | None
    progress: Progress | None
    attempts: int
    max_retries: Annotated[int | None, Meta(description="null: retried for ever (max_retries=None)")]
    priority: int
    workflow_id: str | None
    root_id: str | None
    node: str | None
    queue: Annotated[
        str,
        Meta(description="The named queue the job waits in: its `queue` option, else its `routing_key`, else default"),
    ]
    routing_key: str | None
    concurrency_key: Annotated[str | None, Meta(description="At most `concurrency_limit` jobs with it run at once")]
    concurrency_limit: Annotated[int | None, Meta(description="null when there is no concurrency_key")]
    rate_limit: Annotated[str | None, Meta(description="The task's Celery rate limit when the job was made (10/m)")]
    parent_id: Annotated[str | None, Meta(description="Celery's parent_id: the task that sent this one")]
    created_at: DateTime
    due_at: DateTime
    expires: Annotated[
        str | None,
        Meta(
            description="Celery's expires: not started by then, the job ends REVOKED (expired) unrun",
            extra_json_schema={"extra": {"format": "date-time"}},
        ),
    ]
    started_at: DateTime | None
    finished_at: DateTime | None
    schedule: Annotated[str | None, Meta(description="The periodic schedule that created the job")]
    tick: Annotated[
        str | None,
        Meta(
            description="The schedule's tick the job stands for (ISO 8601, UTC)",
            extra_json_schema={"extra": {"format": "date-time"}},
        ),
    ]
    idempotency_key: Annotated[str | None, Meta(description="The Idempotency-Key it was submitted under")]

    @classmethod
    def of(cls, job: Job) -> JobOut:
        return cls(
            id=job.id,
            task=job.task,
            state=job.state.value,
            args=job.args,
            kwargs=job.kwargs,
            result=job.result,
            error=job.error,
            progress=job.progress,
            attempts=job.attempts,
            max_retries=job.max_retries,
            priority=job.priority,
            workflow_id=job.workflow_id,
            root_id=job.root_id,
            node=job.node,
            queue=job.queue,
            routing_key=job.options.routing_key,
            concurrency_key=job.options.concurrency_key,
            concurrency_limit=None if job.concurrency is None else job.concurrency[1],
            rate_limit=job.options.rate_limit,
            parent_id=job.options.parent_id,
            created_at=iso(job.created_at),
            due_at=iso(job.due_at),
            expires=iso_or_none(job.options.expires),
            started_at=iso_or_none(job.started_at),
            finished_at=iso_or_none(job.finished_at),
            schedule=job.options.schedule,
            tick=job.options.tick,
            idempotency_key=job.options.idempotency_key,
        )


class JobPageOut(msgspec.Struct, kw_only=True):
    """A page of jobs, newest first; pass ``next_cursor`` as ``cursor`` for the next page."""

    items: list[JobOut]
    next_cursor: str | None


class WorkflowNodeOut(msgspec.Struct, kw_only=True):
    """One step of a workflow that has become a job."""

    node: str | None
    job_id: str
    task: str
    state: JobStateName


class WorkflowOut(msgspec.Struct, kw_only=True):
    """A workflow, its outcome, and each step created so far."""

    id: str
    state: JobStateName
    result: Any
    error: ErrorInfo | None
    created_at: DateTime
    finished_at: DateTime | None
    parent_job_id: str | None
    canvas: dict[str, Any]
    nodes: list[WorkflowNodeOut]
    idempotency_key: Annotated[str | None, Meta(description="The Idempotency-Key it was submitted under")]

    @classmethod
    def of(cls, workflow: Workflow, jobs: list[Job]) -> WorkflowOut:
        return cls(
            id=workflow.id,
            state=workflow.state.value,
            result=workflow.result,
            error=workflow.error,
            created_at=iso(workflow.created_at),
            finished_at=iso_or_none(workflow.finished_at),
            parent_job_id=workflow.parent_job_id,
            canvas=canvas_to_json(workflow.canvas),
            nodes=[WorkflowNodeOut(node=job.node, job_id=job.id, task=job.task, state=job.state.value) for job in jobs],
            idempotency_key=workflow.idempotency_key,
        )


class TaskParameter(msgspec.Struct, kw_only=True):
    """One parameter of a task's function, as its signature declares it."""

    name: str
    kind: Literal["positional", "keyword", "args", "kwargs"]
    """``positional``: by position or name; ``keyword``: by name only; ``args``/``kwargs``: ``*args``/``**kwargs``."""
    type: str | None
    """Its annotation as written (``float``, ``list[str]``); None when it has none."""
    required: bool
    default: Any = None
    """Its default, when not ``required`` (as JSON; a default JSON cannot hold is shown as its ``repr``)."""

    @classmethod
    def of(cls, parameter: inspect.Parameter) -> TaskParameter:
        annotation = parameter.annotation
        default = parameter.default
        required = default is inspect.Parameter.empty and parameter.kind not in _VARIADIC
        if default is inspect.Parameter.empty:
            default = None
        else:
            try:
                msgspec.json.encode(default)
            except (TypeError, ValueError, OverflowError):
                default = repr(default)
        return cls(
            name=parameter.name,
            kind=_KINDS[parameter.kind],
            type=None if annotation is inspect.Parameter.empty else inspect.formatannotation(annotation),
            required=required,
            default=default,
        )


_VARIADIC = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
_KINDS: dict[Any, Literal["positional", "keyword", "args", "kwargs"]] = {
    inspect.Parameter.POSITIONAL_ONLY: "positional",
    inspect.Parameter.POSITIONAL_OR_KEYWORD: "positional",
    inspect.Parameter.KEYWORD_ONLY: "keyword",
    inspect.Parameter.VAR_POSITIONAL: "args",
    inspect.Parameter.VAR_KEYWORD: "kwargs",
}


class TaskOut(msgspec.Struct, kw_only=True):
    """A registered task and the options its jobs run with by default."""

    name: str
    doc: str | None
    parameters: list[str]
    signature: list[TaskParameter]
    """Each of ``parameters`` with its kind, type and default (empty when the function's cannot be read)."""
    is_async: bool
    options: dict[str, Any]

    @classmethod
    def of(cls, definition: TaskDefinition) -> TaskOut:
        policy = definition.retry_policy
        return cls(
            name=definition.name,
            doc=definition.doc,
            parameters=list(definition.parameters),
            signature=[
                TaskParameter.of(parameter)
                for parameter in (definition.signature.parameters.values() if definition.signature else ())
                if parameter.name in definition.parameters
            ],
            is_async=definition.is_async,
            options={
                "max_retries": definition.max_retries,
                "time_limit": definition.time_limit,
                "priority": definition.priority,
                "retry_on_worker_lost": definition.retry_on_worker_lost,
                "autoretry_for": [exc.__name__ for exc in definition.autoretry_for],
                "default_retry_delay": policy.default_retry_delay,
                "retry_backoff": policy.retry_backoff,
                "retry_backoff_max": policy.retry_backoff_max,
                "retry_jitter": policy.retry_jitter,
                "rate_limit": definition.rate_limit,
                "concurrency_key": definition.concurrency_key,
                "concurrency_limit": definition.concurrency_limit,
            },
        )


class Health(msgspec.Struct, kw_only=True):
    status: str
    detail: str | None = None


class SharedQueue(msgspec.Struct, kw_only=True):
    """Jobs of the storage every replica on one database shares, as the database counts them: every replica
    answers the same."""

    waiting: Annotated[int, Meta(ge=0, description="PENDING or RETRY, scheduled ones included")]
    running: Annotated[int, Meta(ge=0, description="STARTED, on whichever replica runs them")]


class Readiness(msgspec.Struct, kw_only=True):
    """``GET /ready``: whether this replica can work, which replica answers, the shared queue, and the jobs
    running in this replica."""

    status: Literal["ok", "unavailable"]
    detail: str | None = None
    replica: Annotated[str, Meta(description="GEEKBLOG_REPLICA of the process answering (default host-pid)")]
    storage: Literal["sqlite", "postgres", "memory"]
    shared_queue: Annotated[
        SharedQueue | None, Meta(description="null when storage was not read (the engine is not running)")
    ]
    running_here: Annotated[int, Meta(ge=0, description="jobs running in this replica now")]

    @classmethod
    def of(cls, report: HealthReport) -> Readiness:
        shared = report.shared_queue
        return cls(
            status="ok" if report.problem is None else "unavailable",
            detail=report.problem,
            replica=report.replica,
            storage=report.storage,  # type: ignore[arg-type]  # the setting's Literal, carried as a str
            shared_queue=None if shared is None else SharedQueue(waiting=shared.waiting, running=shared.running),
            running_here=report.running_here,
        )


class QueueOut(msgspec.Struct, kw_only=True):
    """A named queue: its waiting jobs (every replica on one database counts the same) and whether the
    replica answering serves it."""

    name: str
    waiting: Annotated[int, Meta(ge=0, description="PENDING or RETRY jobs of the queue, scheduled ones included")]
    served_here: Annotated[bool, Meta(description="whether the replica answering takes jobs from it")]
    concurrency_here: Annotated[
        int | None, Meta(description="its limit in the replica answering (GEEKBLOG_QUEUES); null: none of its own")
    ]


def iso(timestamp: float) -> str:
    try:
        return datetime.fromtimestamp(timestamp, UTC).isoformat()
    except (OverflowError, OSError, ValueError):  # a time no datetime can hold (stored before bounds were checked)
        return str(timestamp)


def iso_or_none(timestamp: float | None) -> str | None:
    return None if timestamp is None else iso(timestamp)


class ProjectSubmission(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """``POST /projects``: what to write about, for whom, how, and in how many sections."""

    # Not blank: the pipeline strips the topic and refuses an empty one (400, "the topic must not be empty").
    # Documented only ("extra" is Litestar's schema_extra), so that refusal and its message stay the same.
    topic: Annotated[str, Meta(min_length=1, max_length=500, extra_json_schema={"extra": {"pattern": NOT_BLANK}})]
    audience: Annotated[str, Meta(max_length=200)] | None = None
    tone: Annotated[str, Meta(max_length=200)] | None = None
    sections: Annotated[int, Meta(ge=1, le=12)] | None = None


class SectionIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    id: Annotated[str, Meta(min_length=1, max_length=100)] | None = None
    title: Annotated[str, Meta(min_length=1, max_length=300)]
    brief: Annotated[str, Meta(max_length=2000)] = ""


class PlanEdit(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """``PUT /projects/{id}/plan``: the user's own plan; its sections are kept by ``keep`` and ``merge``."""

    title: Annotated[str, Meta(min_length=1, max_length=300)]
    sections: Annotated[list[SectionIn], Meta(min_length=1, max_length=12)]


class ArticleRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """``POST /projects/{id}/article``: ``plan`` says what planning does with an existing plan."""

    plan: Literal["keep", "replace", "merge"] = "keep"


class ArticleStarted(msgspec.Struct, kw_only=True):
    """The workflow writing the article; its jobs are listed by ``GET /jobs?workflow_id=...``."""

    workflow_id: str
    project_id: str
    status: str
    events: str


class ProjectOut(msgspec.Struct, kw_only=True):
    """A project, its status and every stage's saved output."""

    id: str
    topic: str
    audience: str
    tone: str
    sections_wanted: int
    status: ProjectStatusName
    plan: Plan | None
    research: dict[str, str]
    drafts: dict[str, str]
    article: str | None
    finished: str | None
    workflow_id: str | None
    error: str | None
    created_at: DateTime
    updated_at: DateTime

    @classmethod
    def of(cls, project: Project) -> ProjectOut:
        return cls(
            id=project.id,
            topic=project.topic,
            audience=project.audience,
            tone=project.tone,
            sections_wanted=project.sections_wanted,
            status=project.status.value,
            plan=project.plan,
            research=project.research,
            drafts=project.drafts,
            article=project.article,
            finished=project.finished,
            workflow_id=project.workflow_id,
            error=project.error,
            created_at=iso(project.created_at),
            updated_at=iso(project.updated_at),
        )


class ProjectPageOut(msgspec.Struct, kw_only=True):
    items: list[ProjectOut]
    next_cursor: str | None
