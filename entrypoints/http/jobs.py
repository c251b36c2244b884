"""``/jobs``: submit, read, list, cancel, retry and watch single jobs."""

from __future__ import annotations

from typing import Annotated, Any, cast

from litestar import Controller, MediaType, Request, Response, get, post
from litestar.exceptions import ValidationException
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter
from litestar.response import ServerSentEvent

from application.job_service import JobService
from application.ports import EventBus, JobFilter
from domain.states import JobState, is_terminal
from entrypoints.http.fast_path import FAST_PATH, READ, SUBMIT
from entrypoints.http.idempotency import CONFLICT, KeyHeader, idempotency, repeated
from entrypoints.http.injection import Injected
from entrypoints.http.job_replies import read_job, submit_job
from entrypoints.http.openapi import EVENT_STREAM, optional_string, problems
from entrypoints.http.schemas import CURSOR, CURSOR_PATTERN, JobOut, JobPageOut, JobSubmission
from entrypoints.http.streams import LastEventId, Opened, state_event, stream

NO_JOB = {404: "No job has this id"}


def job_response(body: bytes, *, status_code: int = 200, headers: dict[str, str] | None = None) -> Response[JobOut]:
    """A job encoded by ``job_replies``: Litestar sends bytes as they are."""
    response = Response(body, status_code=status_code, media_type=MediaType.JSON, headers=headers)
    return cast("Response[JobOut]", response)  # the body is a JobOut, already encoded


class JobController(Controller):
    """Jobs are task runs; tasks are the registered functions (see ``/tasks``)."""

    path = "/jobs"
    tags = ["jobs"]

    @post(
        "/",
        status_code=202,
        summary="Submit a job",
        opt={FAST_PATH: SUBMIT},  # the plain submissions are answered by fast_path.JobsFastPath
        responses={
            200: repeated(JobOut, "job"),
            **problems(
                400,
                409,
                413,
                415,
                422,
                503,
                described={
                    409: CONFLICT,
                    422: "The task is not registered, the arguments do not fit its signature or are not JSON data, "
                    "the schedule (eta, countdown) is out of range, expires or a queue control (queue, routing_key, "
                    "concurrency_key, concurrency_limit) is malformed (invalid-call-option, naming it), or the "
                    "Idempotency-Key is malformed",
                },
            ),
        },
    )
    async def submit(
        self,
        data: JSONBody[JobSubmission],
        jobs: Injected[JobService],
        request: Request[Any, Any, Any],
        idempotency_key: KeyHeader = None,
    ) -> Response[JobOut]:
        """Queue a run of a registered task. The job is committed before this answers. With an
        ``Idempotency-Key``, the key is stored with the job in that commit; the same request again answers
        ``200`` with that job as it is now, another request under the key ``409``."""
        submitted = await submit_job(jobs, data, idempotency(request, "POST /jobs", data))
        return job_response(submitted.body, status_code=submitted.status, headers={"Location": submitted.location})

    @get("/", summary="List jobs, newest first", responses=problems(400, 503))
    async def list_jobs(
        self,
        jobs: Injected[JobService],
        job_state: Annotated[
            str | None,
            QueryParameter(
                name="state",
                description="Only jobs in this state",
                schema_extra=optional_string(enum=list(JobState.__members__)),
            ),
        ] = None,
        task: FromQuery[str | None] = None,
        workflow_id: FromQuery[str | None] = None,
        schedule: Annotated[
            str | None, QueryParameter(description="Only jobs created by this periodic schedule")
        ] = None,
        queue: Annotated[
            str | None,
            QueryParameter(description="Only jobs of this named queue (their `queue`, as GET /jobs/{id} shows it)"),
        ] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=500)] = 50,
        cursor: Annotated[
            str | None,
            QueryParameter(
                description="The next_cursor of the previous page", schema_extra=optional_string(pattern=CURSOR_PATTERN)
            ),
        ] = None,
    ) -> JobPageOut:
        """Filter by ``state``, ``task``, ``workflow_id``, ``schedule`` or ``queue``; page with ``cursor`` = the last
        ``next_cursor``."""
        if job_state is not None and job_state not in JobState.__members__:
            raise ValidationException(f"state must be one of {', '.join(JobState.__members__)}, got {job_state!r}")
        if cursor is not None and not CURSOR.fullmatch(cursor):
            raise ValidationException(f"cursor must be a next_cursor from an earlier page, got {cursor!r}")
        page = await jobs.list(
            JobFilter(
                state=JobState(job_state) if job_state else None,
                task=task,
                workflow_id=workflow_id,
                schedule=schedule,
                queue=queue,
            ),
            limit=limit,
            cursor=cursor,
        )
        return JobPageOut(items=[JobOut.of(job) for job in page.items], next_cursor=page.next_cursor)

    @get(
        "/{job_id:str}",
        summary="Get a job",
        responses=problems(400, 404, 503, described=NO_JOB),
        opt={FAST_PATH: READ},  # answered by fast_path.JobsFastPath when there is no query string
    )
    async def get_job(self, job_id: FromPath[str], jobs: Injected[JobService]) -> Response[JobOut]:
        return job_response(await read_job(jobs, job_id))

    @post(
        "/{job_id:str}/cancel",
        status_code=200,
        summary="Cancel a job",
        responses=problems(400, 404, 409, 503, described={**NO_JOB, 409: "The job has finished"}),
    )
    async def cancel(self, job_id: FromPath[str], jobs: Injected[JobService]) -> JobOut:
        """Revoke a queued job, or cancel a running one; 409 once it has finished."""
        return JobOut.of(await jobs.cancel(job_id))

    @post(
        "/{job_id:str}/retry",
        status_code=202,
        summary="Retry a failed or revoked job",
        responses=problems(400, 404, 409, 503, described={**NO_JOB, 409: "The job is not FAILURE or REVOKED"}),
    )
    async def retry(self, job_id: FromPath[str], jobs: Injected[JobService]) -> JobOut:
        """Queue a FAILURE or REVOKED job again with a fresh count of attempts; 409 otherwise."""
        return JobOut.of(await jobs.retry(job_id))

    @get(
        "/{job_id:str}/events",
        summary="Watch a job (server-sent events)",
        responses={200: EVENT_STREAM, **problems(400, 404, 503, described=NO_JOB)},
    )
    async def events(
        self,
        job_id: FromPath[str],
        jobs: Injected[JobService],
        bus: Injected[EventBus],
        last_event_id: LastEventId = None,
    ) -> ServerSentEvent:
        """``text/event-stream``: the current state first, then every state and progress change, each with an
        ``id``; the stream closes after the terminal state. ``Last-Event-ID`` resumes after that event."""
        opened = Opened(bus, job_id, last_event_id)
        try:
            job = await jobs.get(job_id)
        except BaseException:
            opened.subscription.close()
            raise
        snapshot = state_event(
            "job",
            job.id,
            job.state.value,
            job.finished_at or job.started_at or job.created_at,
            task=job.task,
            workflow_id=job.workflow_id,
            result=job.result,
            error=job.error,
        )
        return stream(
            opened,
            opened.snapshot([snapshot]),
            done=is_terminal(job.state),
            ends=lambda event: event.id == job_id and event.terminal,
        )
