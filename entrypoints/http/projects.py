"""``/projects``: GeekBlog projects and the article pipeline that writes them."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, Response, get, post, put
from litestar.exceptions import ValidationException
from litestar.params import FromPath, JSONBody, QueryParameter
from litestar.response import ServerSentEvent

from application.article_pipeline import ArticlePipeline, article_workflow
from application.job_service import JobService
from application.ports import EventBus
from domain.article import MergeStrategy
from domain.errors import Conflict, NotFound
from domain.project import ProjectStatus
from domain.states import is_terminal
from entrypoints.http.injection import Injected
from entrypoints.http.openapi import EVENT_STREAM, optional_string, problems
from entrypoints.http.schemas import (
    CURSOR,
    CURSOR_PATTERN,
    ArticleRequest,
    ArticleStarted,
    PlanEdit,
    ProjectOut,
    ProjectPageOut,
    ProjectSubmission,
)
from entrypoints.http.streams import LastEventId, Opened, state_event, stream

_DONE = frozenset({ProjectStatus.FINISHED.value, ProjectStatus.FAILED.value})

NO_PROJECT = {404: "No project has this id"}


class ProjectController(Controller):
    """Create projects, edit their plan, start the article workflow, read and watch the result."""

    path = "/projects"
    tags = ["projects"]

    @post("/", status_code=201, summary="Create a project", responses=problems(400, 413, 415, 503))
    async def create(
        self, data: JSONBody[ProjectSubmission], pipeline: Injected[ArticlePipeline]
    ) -> Response[ProjectOut]:
        try:
            project = await pipeline.create(data.topic, audience=data.audience, tone=data.tone, sections=data.sections)
        except ValueError as exc:
            raise ValidationException(str(exc)) from None
        return Response(ProjectOut.of(project), status_code=201, headers={"Location": f"/projects/{project.id}"})

    @get("/", summary="List projects, newest first", responses=problems(400, 503))
    async def list_projects(
        self,
        pipeline: Injected[ArticlePipeline],
        limit: Annotated[int, QueryParameter(ge=1, le=200)] = 50,
        cursor: Annotated[
            str | None,
            QueryParameter(
                description="The next_cursor of the previous page", schema_extra=optional_string(pattern=CURSOR_PATTERN)
            ),
        ] = None,
    ) -> ProjectPageOut:
        if cursor is not None and not CURSOR.fullmatch(cursor):
            raise ValidationException(f"cursor must be a next_cursor from an earlier page, got {cursor!r}")
        page = await pipeline.list_projects(limit=limit, cursor=cursor)
        return ProjectPageOut(items=[ProjectOut.of(project) for project in page.items], next_cursor=page.next_cursor)

    @get(
        "/{project_id:str}",
        summary="Get a project with every stage's output",
        responses=problems(400, 404, 503, described=NO_PROJECT),
    )
    async def get_project(self, project_id: FromPath[str], pipeline: Injected[ArticlePipeline]) -> ProjectOut:
        return ProjectOut.of(await pipeline.get(project_id))

    @put(
        "/{project_id:str}/plan",
        summary="Replace the plan with your own",
        responses=problems(400, 404, 413, 415, 503, described=NO_PROJECT),
    )
    async def edit_plan(
        self, project_id: FromPath[str], data: JSONBody[PlanEdit], pipeline: Injected[ArticlePipeline]
    ) -> ProjectOut:
        """Every section of this plan is marked edited: planning with ``keep`` or ``merge`` keeps it."""
        await pipeline.edit_plan(project_id, data.title, [(s.id, s.title, s.brief) for s in data.sections])
        return ProjectOut.of(await pipeline.get(project_id))

    @post(
        "/{project_id:str}/article",
        status_code=202,
        summary="Start writing the article",
        responses=problems(
            400,
            404,
            409,
            413,
            415,
            503,
            described={**NO_PROJECT, 409: "An article workflow of this project is still running"},
        ),
    )
    async def start_article(
        self,
        project_id: FromPath[str],
        pipeline: Injected[ArticlePipeline],
        jobs: Injected[JobService],
        data: JSONBody[ArticleRequest | None] = None,
    ) -> ArticleStarted:
        """Runs ``ai.full_article_workflow``: planning, research and writing of every section in parallel,
        assembly, finishing. Stages whose output is saved are not redone. 409 while one is running."""
        project = await pipeline.get(project_id)
        if project.workflow_id is not None:
            try:
                current = await jobs.get_workflow(project.workflow_id)
            except NotFound:
                current = None
            if current is not None and not is_terminal(current.state):
                raise Conflict(f"project {project_id} is already being written by workflow {current.id}")
        strategy = MergeStrategy((data or ArticleRequest()).plan)
        workflow = await jobs.submit_canvas(article_workflow(project_id, strategy))
        await pipeline.started(project_id, workflow.id)
        return ArticleStarted(
            workflow_id=workflow.id,
            project_id=project_id,
            status=ProjectStatus.PLANNING.value,
            events=f"/projects/{project_id}/events",
        )

    @get(
        "/{project_id:str}/article",
        summary="The finished article (Markdown)",
        media_type="text/markdown",
        responses=problems(400, 404, 503, described={404: "No project has this id, or its article is not finished"}),
    )
    async def article(self, project_id: FromPath[str], pipeline: Injected[ArticlePipeline]) -> Response[str]:
        """``text/markdown``, one ``## `` heading per section; 404 until the article is finished."""
        project = await pipeline.get(project_id)
        if project.finished is None:
            raise NotFound("finished article for project", project_id)
        return Response(project.finished, media_type="text/markdown")

    @get(
        "/{project_id:str}/events",
        summary="Watch the pipeline (server-sent events)",
        responses={200: EVENT_STREAM, **problems(400, 404, 503, described=NO_PROJECT)},
    )
    async def events(
        self,
        project_id: FromPath[str],
        pipeline: Injected[ArticlePipeline],
        bus: Injected[EventBus],
        last_event_id: LastEventId = None,
    ) -> ServerSentEvent:
        """The project's status first, then each stage and section as it starts and finishes (``progress``),
        each with an ``id``; the stream closes when the project is FINISHED or FAILED. ``Last-Event-ID``
        resumes after that event."""
        opened = Opened(bus, project_id, last_event_id)
        try:
            project = await pipeline.get(project_id)
        except BaseException:
            opened.subscription.close()
            raise
        snapshot = state_event("project", project.id, project.status.value, project.updated_at)
        return stream(
            opened,
            opened.snapshot([snapshot]),
            done=project.status.value in _DONE,
            ends=lambda event: event.kind == "project" and event.state in _DONE,
        )
