"""What ``/schema/openapi.json`` says beyond what Litestar infers from the handlers' signatures.

* :func:`problems`: the ``application/problem+json`` error responses of one operation (every one of them
  may also answer 401, see :data:`BEARER`), replacing Litestar's default 400 ``{status_code, detail, extra}``.
* :data:`EVENT_STREAM`: the ``text/event-stream`` 200 of the ``/events`` routes.
* :class:`ClosedStructSchemaPlugin`: request bodies that refuse unknown fields say
  ``additionalProperties: false``, numeric bounds of 0 (``Meta(ge=0)``) are kept, and an optional time's
  ``format: date-time`` is on its string arm.
* :func:`openapi_config`: the document's metadata and the bearer scheme.
* :func:`operation_id`: the readable ``operationId`` of each operation (``submitJob``, ``getJob``, ...), the
  method names of generated clients.
* :func:`document_optional_bodies`: a request body whose parameter has a default is not required.
* :func:`document_event_streams`: each event of the ``/events`` streams: its name, id and JSON data.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, cast

import msgspec
from litestar._openapi.schema_generation.plugins.struct import StructSchemaPlugin
from litestar.openapi import OpenAPIConfig, ResponseSpec
from litestar.openapi.spec import Components, OpenAPIType, RequestBody, Schema, SecurityScheme
from litestar.routes import HTTPRoute

from entrypoints.http.docs import render_plugins
from entrypoints.http.problems import PROBLEM_JSON, Problem
from entrypoints.http.schemas import Readiness
from entrypoints.http.streams import ID_PATTERN, ProgressEvent, StateEvent

if TYPE_CHECKING:
    from litestar import Litestar
    from litestar._openapi.schema_generation import SchemaCreator
    from litestar.handlers import HTTPRouteHandler
    from litestar.types import Method
    from litestar.types.internal_types import PathParameterDefinition
    from litestar.typing import FieldDefinition

BEARER = "bearer"
UNAUTHORIZED = "GEEKBLOG_API_TOKEN is set and the request has no 'Authorization: Bearer <token>' header with it"

# The default description of each refusal; an operation may say more precisely what it refuses.
DESCRIPTIONS: dict[int, str] = {
    400: "The request does not validate: a malformed JSON body, an unknown field, a value out of range, "
    "a query parameter of the wrong form",
    401: UNAUTHORIZED,
    404: "No job, workflow or project has this id",
    409: "Not possible in the current state",
    413: "The body is over GEEKBLOG_MAX_BODY_BYTES",
    415: "The body is not sent as application/json (or application/*+json)",
    422: "The body is valid JSON of the right shape that the service cannot act on",
    503: "Storage unavailable (the database is locked, full or unreachable): nothing was written",
}


def problems(*statuses: int, described: Mapping[int, str] | None = None) -> dict[int, ResponseSpec]:
    """The problem responses of an operation that needs the bearer token when one is configured (401)."""
    texts = {**DESCRIPTIONS, **(described or {})}
    return {status: _problem(texts[status]) for status in sorted({*statuses, 401})}


def _problem(description: str) -> ResponseSpec:
    return ResponseSpec(
        data_container=Problem, media_type=PROBLEM_JSON, description=description, generate_examples=False
    )


EVENT_STREAM = ResponseSpec(
    data_container=str,  # the schema of each event is set by document_event_streams
    media_type="text/event-stream",
    description="Server-sent events, each with an id: 'state' (StateEvent) and 'progress' (ProgressEvent) "
    "messages whose data is JSON, and keepalive comments",
    generate_examples=False,
)

NOT_READY = ResponseSpec(
    data_container=Readiness,
    description="The database does not answer or the dispatcher is not running",
    generate_examples=False,
)


class ClosedStructSchemaPlugin(StructSchemaPlugin):
    """Litestar's schema of a msgspec Struct, plus what it leaves out.

    * ``forbid_unknown_fields=True`` becomes ``additionalProperties: false``;
    * a numeric bound of 0 (``Meta(ge=0)``, ``Meta(gt=0)``, ...) is kept: Litestar copies only the
      truthy ones into the schema.
    """

    _BOUNDS = (("ge", "minimum"), ("gt", "exclusive_minimum"), ("le", "maximum"), ("lt", "exclusive_maximum"))

    def to_openapi_schema(self, field_definition: FieldDefinition, schema_creator: SchemaCreator) -> Schema:
        schema = super().to_openapi_schema(field_definition, schema_creator)
        info = msgspec.inspect.type_info(field_definition.type_)
        if not isinstance(info, msgspec.inspect.StructType):  # pragma: no cover - the parent plugin's own check
            return schema
        if info.forbid_unknown_fields:
            schema.additional_properties = False
        for field in info.fields:
            prop = (schema.properties or {}).get(field.encode_name)
            if isinstance(prop, Schema):
                self._format_the_string_arm(prop)
                self._keep_item_format(field.type, prop)
                self._keep_zero_bounds(_numeric(field.type), prop)
                self._keep_number_arm(field.type, prop)
        return schema

    @staticmethod
    def _format_the_string_arm(prop: Schema) -> None:
        """A time or null (``DateTime | None``): Litestar puts ``format`` beside the ``oneOf``; it goes to the
        string arm, where readers (and generated clients) look for it."""
        if prop.format is None or not prop.one_of:
            return
        strings = [arm for arm in prop.one_of if isinstance(arm, Schema) and arm.type == OpenAPIType.STRING]
        if len(strings) == 1:
            strings[0].format, prop.format = prop.format, None

    @staticmethod
    def _keep_item_format(type_: Any, prop: Schema) -> None:
        """A list of times (``list[DateTime]``): Litestar drops the items' ``format``."""
        if not isinstance(type_, msgspec.inspect.ListType) or not isinstance(prop.items, Schema):
            return
        item = type_.item_type
        if isinstance(item, msgspec.inspect.Metadata) and prop.items.format is None:
            prop.items.format = (item.extra_json_schema or {}).get("extra", {}).get("format")

    @classmethod
    def _keep_number_arm(cls, type_: Any, prop: Schema) -> None:
        """A number or a time (``expires``): Litestar's ``oneOf`` keeps neither arm's bounds nor description;
        the number arm gets its own back."""
        if not isinstance(type_, msgspec.inspect.UnionType) or not prop.one_of:
            return
        arms = [arm for arm in type_.types if isinstance(arm, msgspec.inspect.Metadata)]
        numbers = [arm for arm in arms if isinstance(arm.type, msgspec.inspect.FloatType)]
        targets = [arm for arm in prop.one_of if isinstance(arm, Schema) and arm.type == OpenAPIType.NUMBER]
        if len(arms) < 2 or len(numbers) != 1 or len(targets) != 1:  # a lone number keeps its bounds already
            return
        number, target = numbers[0], targets[0]
        for constraint, keyword in cls._BOUNDS:
            if getattr(number.type, constraint) is not None:
                setattr(target, keyword, getattr(number.type, constraint))
        target.description = (number.extra_json_schema or {}).get("description")

    @classmethod
    def _keep_zero_bounds(cls, type_: Any, prop: Schema) -> None:
        if not isinstance(type_, (msgspec.inspect.IntType, msgspec.inspect.FloatType)):
            return
        for constraint, keyword in cls._BOUNDS:
            if getattr(type_, constraint) == 0 and getattr(prop, keyword) is None:
                setattr(prop, keyword, 0)


def _numeric(type_: Any) -> Any:
    """The int or float type of a field, through ``Optional`` and ``Annotated`` metadata."""
    if isinstance(type_, msgspec.inspect.UnionType):
        arms = [arm for arm in type_.types if not isinstance(arm, msgspec.inspect.NoneType)]
        type_ = arms[0] if len(arms) == 1 else type_
    if isinstance(type_, msgspec.inspect.Metadata):
        type_ = type_.type
    return type_


def optional_string(**keywords: Any) -> dict[str, Any]:
    """``schema_extra`` of an optional query parameter: a string with these keywords. (Litestar documents
    ``str | None`` as ``oneOf: [string, null]``, but a query parameter is absent, never null.)"""
    return {"one_of": None, "type": "string", **keywords}


def openapi_config(*, version: str, token_configured: bool) -> OpenAPIConfig:
    """The document's metadata. The bearer scheme is always described (every operation but ``/health``
    documents its 401); it is *required* (top-level ``security``) only when a token is configured, so the
    document is true either way."""
    return OpenAPIConfig(
        title="GeekBlog Tasks",
        version=version,
        description="A durable background-task engine with Celery's programming model, on SQLite.",
        path="/schema",
        operation_id_creator=operation_id,
        render_plugins=render_plugins(),
        components=Components(
            security_schemes={
                BEARER: SecurityScheme(
                    type="http",
                    scheme="bearer",
                    description="GEEKBLOG_API_TOKEN; needed by every route but /health when it is set",
                )
            }
        ),
        security=[{BEARER: []}] if token_configured else None,
    )


# Every route's operationId: what a generated client calls the method (Litestar's default gave
# ``jobs_job_id_cancel_cancel``-like names). A route missing here gets method + path in camelCase.
OPERATION_IDS: dict[str, str] = {
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


def operation_id(
    route_handler: HTTPRouteHandler, http_method: Method, path_components: list[str | PathParameterDefinition]
) -> str:
    """Litestar's ``operation_id_creator``: the name in :data:`OPERATION_IDS`, else method and path words in
    camelCase (``GET /dashboard/stats``: ``getDashboardStats``)."""
    parts = [part if isinstance(part, str) else part.name for part in path_components]
    path = "/" + "/".join(part if isinstance(part, str) else f"{{{part.name}}}" for part in path_components)
    method = str(getattr(http_method, "value", http_method)).upper()  # an HttpMethod at run time
    known = OPERATION_IDS.get(f"{method} {path.rstrip('/') or '/'}")
    if known is not None:
        return known
    words = [word for part in parts for word in part.replace("-", "_").split("_") if word]
    return method.lower() + "".join(word[:1].upper() + word[1:] for word in words)


def document_optional_bodies(app: Litestar) -> None:
    """Litestar documents every request body as required; one whose ``data`` parameter has a default
    (``POST /projects/{id}/article``) may be left out. (This builds the document once, at startup.)"""
    paths = app.openapi_schema.paths or {}
    for route in app.routes:
        if not isinstance(route, HTTPRoute) or (item := paths.get(route.path_format)) is None:
            continue
        for handler in route.route_handlers:
            data = handler.parsed_fn_signature.parameters.get("data")
            if data is None or not data.has_default:
                continue
            for method in handler.http_methods:
                operation = getattr(item, method.lower(), None)
                if operation is not None and isinstance(operation.request_body, RequestBody):
                    operation.request_body.required = False


def event_schema() -> dict[str, Any]:
    """One server-sent event of a stream, as schemathesis and Open API 3.1 read ``text/event-stream``: an object
    of the event's fields, whose ``data`` is JSON of the event type's schema."""

    def one(name: str, struct: str) -> dict[str, Any]:
        return {
            "type": "object",
            "required": ["event", "data", "id"],
            "properties": {
                "event": {"const": name},
                "id": {"type": "string", "pattern": ID_PATTERN},
                "data": {
                    "type": "string",
                    "contentMediaType": "application/json",
                    "contentSchema": {"$ref": f"#/components/schemas/{struct}"},
                },
            },
        }

    return {"oneOf": [one("state", "StateEvent"), one("progress", "ProgressEvent")]}


def document_event_streams(app: Litestar) -> None:
    """Litestar documents a ``ServerSentEvent`` as a string; each ``/events`` route's 200 gets the schema of
    its events instead, and the event types (and what they refer to) join the components."""
    openapi = app.openapi_schema
    _, components = msgspec.json.schema_components(
        [StateEvent, ProgressEvent], ref_template="#/components/schemas/{name}"
    )
    if openapi.components.schemas is None:  # pragma: no cover - every document here has schemas
        openapi.components.schemas = {}
    schemas = openapi.components.schemas
    for name, schema in components.items():
        schemas.setdefault(name, cast("Schema", schema))  # Litestar writes a dict out as it is
    for path, item in (openapi.paths or {}).items():
        if not path.endswith("/events") or item.get is None or item.get.responses is None:
            continue
        response = item.get.responses.get("200")
        media = getattr(response, "content", None) or {}
        if "text/event-stream" in media:
            media["text/event-stream"].schema = cast("Schema", event_schema())
