"""``/workflows``: submit a canvas (chain, group, chord, nested), read it with its steps, cancel and watch it."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, get, post
from litestar.params import FromPath, JSONBody
from litestar.response import ServerSentEvent

from application.job_service import JobService
from application.ports import EventBus
from domain.states import is_terminal
from entrypoints.http.canvas_json import canvas_from_json
from entrypoints.http.idempotency import CONFLICT, KeyHeader, idempotency, repeated
from entrypoints.http.injection import Injected
from entrypoints.http.openapi import EVENT_STREAM, problems
from entrypoints.http.schemas import WorkflowOut, WorkflowSubmission
from entrypoints.http.streams import LastEventId, Opened, state_event, stream

NO_WORKFLOW = {404: "No workflow has this id"}


class WorkflowController(Controller):
    """Workflows are canvases whose task calls become jobs as earlier steps finish."""

    path = "/workflows"
    tags = ["workflows"]

    @post(
        "/",
        status_code=202,
        summary="Submit a workflow",
        responses={
            200: repeated(WorkflowOut, "workflow"),
            **problems(
                400,
                409,
                413,
                415,
                422,
                503,
                described={
                    409: CONFLICT,
                    422: "The canvas is not a task, chain, group or chord (or is too deep or too large), names a "
                    "task that is not registered, or has arguments that do not fit a task or are not JSON data; "
                    "or the Idempotency-Key is malformed",
                },
            ),
        },
    )
    async def submit(
        self,
        data: JSONBody[WorkflowSubmission],
        jobs: Injected[JobService],
        request: Request[Any, Any, Any],
        idempotency_key: KeyHeader = None,
    ) -> Response[WorkflowOut]:
        """Store the canvas and the steps that can start at once, in one commit, before answering. With an
        ``Idempotency-Key``, as ``POST /jobs``: the key is stored in that commit, the same request again
        answers ``200`` with that workflow as it is now, another request under the key ``409``."""
        keyed = idempotency(request, "POST /workflows", data)
        canvas = canvas_from_json(data.canvas, now=jobs.now())
        if keyed is None:
            workflow, created = await jobs.submit_canvas(canvas), True
        else:
            workflow, created = await jobs.submit_canvas_once(canvas, keyed)
        steps = await jobs.workflow_jobs(workflow.id)
        return Response(
            WorkflowOut.of(workflow, steps),
            status_code=202 if created else 200,
            headers={"Location": f"/workflows/{workflow.id}"},
        )

    @get(
        "/{workflow_id:str}",
        summary="Get a workflow and its steps",
        responses=problems(400, 404, 503, described=NO_WORKFLOW),
    )
    async def get_workflow(self, workflow_id: FromPath[str], jobs: Injected[JobService]) -> WorkflowOut:
        workflow = await jobs.get_workflow(workflow_id)
        return WorkflowOut.of(workflow, await jobs.workflow_jobs(workflow_id))

    @post(
        "/{workflow_id:str}/cancel",
        status_code=200,
        summary="Cancel a workflow",
        responses=problems(400, 404, 409, 503, described={**NO_WORKFLOW, 409: "The workflow has finished"}),
    )
    async def cancel(self, workflow_id: FromPath[str], jobs: Injected[JobService]) -> WorkflowOut:
        """Revoke the workflow and every unfinished step of it; 409 once it has finished."""
        workflow = await jobs.revoke_workflow(workflow_id)
        return WorkflowOut.of(workflow, await jobs.workflow_jobs(workflow_id))

    @get(
        "/{workflow_id:str}/events",
        summary="Watch a workflow (server-sent events)",
        responses={200: EVENT_STREAM, **problems(400, 404, 503, described=NO_WORKFLOW)},
    )
    async def events(
        self,
        workflow_id: FromPath[str],
        jobs: Injected[JobService],
        bus: Injected[EventBus],
        last_event_id: LastEventId = None,
    ) -> ServerSentEvent:
        """The current state first (the workflow, then each step made so far), then every change of the
        workflow and of its steps (with progress), each with an ``id``; the stream closes after the
        workflow's terminal state. ``Last-Event-ID`` resumes after that event."""
        opened = Opened(bus, workflow_id, last_event_id)
        try:
            workflow = await jobs.get_workflow(workflow_id)
            steps = await jobs.workflow_jobs(workflow_id)
        except BaseException:
            opened.subscription.close()
            raise
        snapshot = [
            state_event(
                "workflow",
                workflow.id,
                workflow.state.value,
                workflow.finished_at or workflow.created_at,
                result=workflow.result,
                error=workflow.error,
            )
        ]
        snapshot.extend(
            state_event(
                "job",
                step.id,
                step.state.value,
                step.finished_at or step.started_at or step.created_at,
                task=step.task,
                workflow_id=step.workflow_id,
                result=step.result,
                error=step.error,
            )
            for step in steps
        )
        return stream(
            opened,
            opened.snapshot(snapshot),
            done=is_terminal(workflow.state),
            # the workflow's own end (a chain's last step has its id too, and ends before it)
            ends=lambda event: event.kind == "workflow" and event.id == workflow_id and event.terminal,
        )
