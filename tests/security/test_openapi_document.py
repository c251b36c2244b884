"""What ``/schema/openapi.json`` documents, and that what fuzzing cannot reach on the default app is true.

``test_fuzz_api.py`` checks every response of the fuzzed app against the document. Some documented
responses never occur there: 401 (no token is configured), 413 (no generated body is that large), 415
(schemathesis sends JSON), 503 (the in-memory repository never fails). Here they are checked the other
way round: each one the document names is produced on a matching app; and the document's shape is pinned
(problem responses everywhere, the bearer scheme, closed request bodies, bounds, enums and patterns).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from domain.states import JobState
from entrypoints.container import Container
from entrypoints.http.app import create_app
from entrypoints.settings import Settings

TOKEN = "s3cret"
BODY_LIMIT = 1024
METHODS = ("get", "put", "post", "delete", "patch")
PROBLEM = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
BODY_STRUCTS = (
    "JobSubmission",
    "JobOptions",
    "WorkflowSubmission",
    "ProjectSubmission",
    "PlanEdit",
    "SectionIn",
    "ArticleRequest",
)
WRITES = {
    ("POST", "/jobs"),
    ("POST", "/jobs/{job_id}/cancel"),
    ("POST", "/jobs/{job_id}/retry"),
    ("POST", "/workflows"),
    ("POST", "/workflows/{workflow_id}/cancel"),
    ("POST", "/projects"),
    ("PUT", "/projects/{project_id}/plan"),
    ("POST", "/projects/{project_id}/article"),
}


def _document(settings: Settings) -> dict[str, Any]:
    app = create_app(Container(settings=settings))
    headers = {"authorization": f"Bearer {settings.api_token}"} if settings.api_token else {}

    async def fetch() -> dict[str, Any]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            response = await client.get("/schema/openapi.json", headers=headers)
            response.raise_for_status()
            document: dict[str, Any] = response.json()
            return document

    return asyncio.run(fetch())


DOCUMENT = _document(Settings(persistence="memory"))
WITH_TOKEN = _document(Settings(persistence="memory", api_token=TOKEN))


def operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document["paths"].items():
        for method in METHODS:
            if method in item:
                yield method.upper(), path, item[method]


def documenting(status: str) -> set[tuple[str, str]]:
    return {(method, path) for method, path, op in operations(DOCUMENT) if status in op["responses"]}


def concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "no-such-id", path)


# ------------------------------------------------------------------------------------------------
# the document's shape
# ------------------------------------------------------------------------------------------------


def test_every_error_is_documented_as_a_problem() -> None:
    for method, path, operation in operations(DOCUMENT):
        for status, response in operation["responses"].items():
            if int(status) < 400 or (path, status) == ("/ready", "503"):
                continue
            assert response["content"] == PROBLEM, (method, path, status, response)
    problem = DOCUMENT["components"]["schemas"]["Problem"]
    assert problem["required"] == ["detail", "status", "title", "type"]
    assert problem["additionalProperties"] is False
    assert (problem["properties"]["status"]["minimum"], problem["properties"]["status"]["maximum"]) == (400, 599)
    assert "status_code" not in str(DOCUMENT), "Litestar's default error schema is still documented somewhere"


def test_the_refusals_of_each_operation() -> None:
    every = {(method, path) for method, path, _ in operations(DOCUMENT)}
    with_id = {(method, path) for method, path in every if "{" in path}
    with_body = {(method, path) for method, path, op in operations(DOCUMENT) if "requestBody" in op}
    assert documenting("401") == every - {("GET", "/health")}
    assert documenting("404") == with_id
    assert documenting("413") == with_body == documenting("415")
    assert with_body == {
        ("POST", "/jobs"),
        ("POST", "/workflows"),
        ("POST", "/projects"),
        ("PUT", "/projects/{project_id}/plan"),
        ("POST", "/projects/{project_id}/article"),
        ("POST", "/schedules"),
        ("PATCH", "/schedules/{name}"),
    }
    assert documenting("422") == {
        ("POST", "/jobs"),
        ("POST", "/workflows"),
        ("POST", "/schedules"),
        ("PATCH", "/schedules/{name}"),
        ("POST", "/schedules/{name}/run"),
    }
    assert documenting("409") == {
        ("POST", "/jobs"),  # an Idempotency-Key used for another request
        ("POST", "/workflows"),
        ("POST", "/jobs/{job_id}/cancel"),
        ("POST", "/jobs/{job_id}/retry"),
        ("POST", "/workflows/{workflow_id}/cancel"),
        ("POST", "/projects/{project_id}/article"),
        ("POST", "/schedules"),
        ("PATCH", "/schedules/{name}"),
    }
    assert documenting("503") >= WRITES | {("GET", "/ready")}
    assert documenting("503") == every - {("GET", "/health"), ("GET", "/tasks")}  # all that reads storage
    assert DOCUMENT["paths"]["/ready"]["get"]["responses"]["503"]["content"] == {
        "application/json": {"schema": {"$ref": "#/components/schemas/Readiness"}}
    }
    assert DOCUMENT["paths"]["/ready"]["get"]["responses"]["200"]["content"] == {
        "application/json": {"schema": {"$ref": "#/components/schemas/Readiness"}}
    }
    for path in ("/jobs", "/workflows"):  # a repeated keyed submission: 200 with what the first one created
        operation = DOCUMENT["paths"][path]["post"]
        assert {"200", "202"} <= set(operation["responses"])
        [header] = [parameter for parameter in operation["parameters"] if parameter["in"] == "header"]
        assert header["name"] == "Idempotency-Key" and header["required"] is False
        assert header["schema"]["maxLength"] == 255
    for path in ("/ready", "/metrics"):  # which replica answered: documented on both
        assert "X-GeekBlog-Replica" in DOCUMENT["paths"][path]["get"]["responses"]["200"]["headers"]


def test_event_streams_are_documented_as_such() -> None:
    streams = [(path, op) for _, path, op in operations(DOCUMENT) if path.endswith("/events")]
    assert len(streams) == 3
    for path, operation in streams:
        assert list(operation["responses"]["200"]["content"]) == ["text/event-stream"], path
        events = operation["responses"]["200"]["content"]["text/event-stream"]["schema"]["oneOf"]
        named = {event["properties"]["event"]["const"]: event for event in events}
        assert set(named) == {"state", "progress"}, path
        for name, event in named.items():
            assert event["required"] == ["event", "data", "id"]
            data = event["properties"]["data"]
            assert data["contentMediaType"] == "application/json"
            struct = {"state": "StateEvent", "progress": "ProgressEvent"}[name]
            assert data["contentSchema"] == {"$ref": f"#/components/schemas/{struct}"}
        [resume] = [p for p in operation["parameters"] if p["in"] == "header"]
        assert resume["name"] == "Last-Event-ID" and resume["required"] is False
        assert (resume["schema"]["type"], resume["schema"]["maxLength"]) == ("string", 64), resume
        assert "oneOf" not in resume["schema"]  # a header is absent, never null
    schemas = DOCUMENT["components"]["schemas"]
    for struct in ("StateEvent", "ProgressEvent"):
        assert schemas[struct]["properties"]["at"]["format"] == "date-time"
        assert {"ErrorInfo", "Progress"} <= set(schemas), "what the events refer to is in the components"
    assert schemas["StateEvent"]["properties"]["state"]["enum"][:6] == [state.value for state in JobState]


def test_the_bearer_scheme_is_required_only_when_a_token_is_configured() -> None:
    for document in (DOCUMENT, WITH_TOKEN):
        assert document["components"]["securitySchemes"]["bearer"]["type"] == "http"
        assert document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
        assert document["paths"]["/health"]["get"]["security"] == [{}]  # anonymous
    assert "security" not in DOCUMENT
    assert WITH_TOKEN["security"] == [{"bearer": []}]
    assert WITH_TOKEN["paths"] == DOCUMENT["paths"]


def test_request_bodies_refuse_unknown_fields() -> None:
    schemas = DOCUMENT["components"]["schemas"]
    for name in BODY_STRUCTS:
        assert schemas[name]["additionalProperties"] is False, name


def test_a_blank_topic_is_documented_as_invalid() -> None:
    # The pipeline strips the topic (str.strip) and refuses an empty one: the pattern says which those are.
    pattern = re.compile(DOCUMENT["components"]["schemas"]["ProjectSubmission"]["properties"]["topic"]["pattern"])
    for code in range(0x110000):
        assert bool(pattern.search(chr(code))) is not chr(code).isspace(), hex(code)
    assert not pattern.search(" \t\u3000\x85\x1e") and pattern.search(" \ufeff ")


def test_zero_bounds_of_job_options() -> None:
    options = DOCUMENT["components"]["schemas"]["JobOptions"]["properties"]
    assert options["countdown"]["minimum"] == 0
    assert options["max_retries"]["minimum"] == 0
    assert options["time_limit"]["exclusiveMinimum"] == 0


def test_query_parameters() -> None:
    def parameter(path: str, name: str) -> dict[str, Any]:
        found: list[dict[str, Any]] = [p for p in DOCUMENT["paths"][path]["get"]["parameters"] if p["name"] == name]
        assert len(found) == 1, (path, name)
        return found[0]

    state = parameter("/jobs", "state")["schema"]
    assert (state["type"], state["enum"]) == ("string", [s.value for s in JobState])
    for path in ("/jobs", "/projects"):
        cursor = parameter(path, "cursor")["schema"]
        assert (cursor["type"], cursor["pattern"]) == ("string", "^[0-9]{1,18}$")


def test_an_article_request_body_is_optional() -> None:
    assert DOCUMENT["paths"]["/projects/{project_id}/article"]["post"]["requestBody"]["required"] is False
    assert DOCUMENT["paths"]["/jobs"]["post"]["requestBody"]["required"] is True


# ------------------------------------------------------------------------------------------------
# the documented refusals fuzzing cannot reach are real
# ------------------------------------------------------------------------------------------------


@pytest.fixture
async def client() -> AsyncIterator[AsyncTestClient[Litestar]]:
    settings = Settings(persistence="memory", shutdown_grace=0.5, api_token=TOKEN, max_body_bytes=BODY_LIMIT)
    async with AsyncTestClient(create_app(Container(settings=settings))) as test_client:
        yield test_client


def assert_problem(response: httpx.Response, status: int) -> None:
    assert response.status_code == status, (response.request.method, response.request.url, response.text[:300])
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["status"] == status


@pytest.mark.parametrize(("method", "path"), sorted(documenting("401")))
async def test_each_documented_401(client: AsyncTestClient[Litestar], method: str, path: str) -> None:
    assert_problem(await client.request(method, concrete(path)), 401)
    wrong = {"authorization": "Bearer not-it"}
    assert_problem(await client.request(method, concrete(path), headers=wrong), 401)


async def test_health_needs_no_token(client: AsyncTestClient[Litestar]) -> None:
    assert (await client.get("/health")).status_code == 200


@pytest.mark.parametrize(("method", "path"), sorted(documenting("413")))
async def test_each_documented_413(client: AsyncTestClient[Litestar], method: str, path: str) -> None:
    body = b'{"topic":"' + b"x" * BODY_LIMIT + b'"}'
    headers = {"authorization": f"Bearer {TOKEN}", "content-type": "application/json"}
    project = (await client.post("/projects", json={"topic": "t"}, headers=headers)).json()
    path = path.replace("{project_id}", project["id"])
    assert_problem(await client.request(method, path, content=body, headers=headers), 413)


@pytest.mark.parametrize(("method", "path"), sorted(documenting("415")))
async def test_each_documented_415(client: AsyncTestClient[Litestar], method: str, path: str) -> None:
    headers = {"authorization": f"Bearer {TOKEN}", "content-type": "text/plain"}
    assert_problem(await client.request(method, concrete(path), content=b"{}", headers=headers), 415)


async def test_not_ready_is_the_documented_503() -> None:
    app = create_app(Container(settings=Settings(persistence="memory")))
    transport = httpx.ASGITransport(app=app)  # no lifespan: the engine never starts
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        response = await client.get("/ready")
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/json"
    assert response.json()["status"] == "unavailable"


def test_expires_documents_both_of_its_forms() -> None:
    """``expires`` is seconds (bounded, as countdown) or a time; the number keeps its bounds inside ``oneOf``."""
    for schema in ("JobOptions", "JobOut"):
        assert "expires" in DOCUMENT["components"]["schemas"][schema]["properties"]
    number, moment, null = DOCUMENT["components"]["schemas"]["JobOptions"]["properties"]["expires"]["oneOf"]
    assert number == {"type": "number", "minimum": 0, "maximum": 316224000.0, "description": "Seconds from submission"}
    assert moment == {"type": "string", "format": "date-time"} and null == {"type": "null"}


# ------------------------------------------------------------------------------------------------
# names, times and states a generated client can use (issue 15)
# ------------------------------------------------------------------------------------------------


def test_every_operation_has_a_readable_unique_operation_id() -> None:
    ids = {f"{method} {path}": operation["operationId"] for method, path, operation in operations(DOCUMENT)}
    assert all(re.fullmatch(r"[a-z]+(?:[A-Z][a-z]+)+", name) for name in ids.values()), ids
    assert len(set(ids.values())) == len(ids), ids
    assert ids == {
        "POST /jobs": "submitJob",
        "GET /jobs": "listJobs",
        "GET /jobs/{job_id}": "getJob",
        "POST /jobs/{job_id}/cancel": "cancelJob",
        "POST /jobs/{job_id}/retry": "retryJob",
        "GET /jobs/{job_id}/events": "streamJobEvents",
        "POST /workflows": "submitWorkflow",
        "GET /workflows/{workflow_id}": "getWorkflow",
        "POST /workflows/{workflow_id}/cancel": "cancelWorkflow",
        "GET /workflows/{workflow_id}/events": "streamWorkflowEvents",
        "POST /projects": "createProject",
        "GET /projects": "listProjects",
        "GET /projects/{project_id}": "getProject",
        "PUT /projects/{project_id}/plan": "replaceProjectPlan",
        "POST /projects/{project_id}/article": "startArticle",
        "GET /projects/{project_id}/article": "getArticle",
        "GET /projects/{project_id}/events": "streamProjectEvents",
        "POST /schedules": "createSchedule",
        "GET /schedules": "listSchedules",
        "GET /schedules/{name}": "getSchedule",
        "PATCH /schedules/{name}": "updateSchedule",
        "DELETE /schedules/{name}": "deleteSchedule",
        "POST /schedules/{name}/run": "runSchedule",
        "GET /queues": "listQueues",
        "GET /tasks": "listTasks",
        "GET /health": "getHealth",
        "GET /ready": "getReadiness",
        "GET /metrics": "getMetrics",
    }


TIMES = {
    "JobOut": {"created_at", "due_at", "expires", "started_at", "finished_at", "tick"},
    "WorkflowOut": {"created_at", "finished_at"},
    "ProjectOut": {"created_at", "updated_at"},
    "ScheduleOut": {"start", "end", "next_run", "last_tick", "created_at", "updated_at"},
}


def _string_arm(schema: dict[str, Any]) -> dict[str, Any]:
    if "oneOf" in schema:
        [arm] = [arm for arm in schema["oneOf"] if arm.get("type") == "string"]
        return arm
    return schema


def test_times_are_documented_as_date_times() -> None:
    schemas = DOCUMENT["components"]["schemas"]
    for name, fields in TIMES.items():
        properties = schemas[name]["properties"]
        for field in fields:
            assert _string_arm(properties[field]) == {"type": "string", "format": "date-time"}, (name, field)
        others = set(properties) - fields
        assert not any(field.endswith("_at") for field in others), (name, others)
    assert schemas["ScheduleOut"]["properties"]["next_runs"]["items"] == {"type": "string", "format": "date-time"}


def test_states_are_documented_as_enums() -> None:
    schemas = DOCUMENT["components"]["schemas"]
    states = [state.value for state in JobState]
    for name in ("JobOut", "WorkflowOut", "WorkflowNodeOut"):
        assert schemas[name]["properties"]["state"] == {"type": "string", "enum": states}, name
    assert schemas["ProjectOut"]["properties"]["status"]["enum"] == [
        "NEW",
        "PLANNING",
        "PLANNED",
        "WRITING",
        "ASSEMBLED",
        "FINISHED",
        "FAILED",
    ]
