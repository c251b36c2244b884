"""A lean answer to the two hottest routes, ``POST /jobs`` and ``GET /jobs/{id}``: ASGI middleware in Litestar.

Litestar's request machinery after routing (signature model, dependency injection, hooks, response
objects) costs most of a small request's CPU: measured on a real ``geekblog serve``, ``POST /jobs`` ran
about a third slower without this path (``bench/submit_throughput.py``; the figures are in the commit
that made this a middleware). :class:`JobsFastPath` is registered through Litestar's ``middleware=``
(after the bearer-token middleware), so Litestar has routed the request and authenticated it before it
runs; it acts only on the handlers marked with the ``opt`` key :data:`FAST_PATH`, and answers them with
the same functions as the controller (``job_replies.submit_job`` / ``read_job``). An error the engine
raises (unknown task, bad arguments, storage unavailable, no such job) propagates to Litestar's exception
handling, which renders it with the app's own handlers (``problems.py``).

It hands the request on to the handler, with the body read so far replayed, whenever it is not sure to
answer exactly as the handler would: a query string, a content type other than exactly
``application/json`` (415 and its variants), an ``Idempotency-Key`` header (keyed submissions are the
handler's), a missing, repeated, zero or too large ``Content-Length``
or a ``Transfer-Encoding`` (400, 413), a body that does not decode into a valid ``JobSubmission`` (400
and its messages). All of that is decided before anything is stored, so a job is never submitted twice.

What the answered requests skip of Litestar are the layers between this middleware and the handler:
``before_request`` (the JSON content-type check, which an ``application/json`` body passes),
``after_request`` / ``after_response`` hooks and the layers' response headers and cookies, none of which
the app has; :func:`check` refuses an app that gains one. ``tests/integration/test_http_fast_path.py``
compares the answers of an app with and without this middleware.
"""

from __future__ import annotations

from typing import Any, Literal, NamedTuple

import msgspec
from litestar import Litestar
from litestar.di import Provide
from litestar.enums import ScopeType
from litestar.handlers import HTTPRouteHandler
from litestar.types import (
    ASGIApp,
    HTTPResponseBodyEvent,
    HTTPResponseStartEvent,
    HTTPScope,
    Receive,
    ReceiveMessage,
    RouteHandlerType,
    Scope,
    Send,
)

from application.job_service import JobService
from entrypoints.http.content_type import require_json_body
from entrypoints.http.job_replies import read_job, submit_job
from entrypoints.http.schemas import JobSubmission

# The opt key that marks a handler this middleware answers, and its values.
FAST_PATH = "jobs_fast_path"
SUBMIT: Literal["submit"] = "submit"
READ: Literal["read"] = "read"
# The dependency that gives handlers the job service (``entrypoints.http.app.services``).
JOB_SERVICE = "jobs"
JSON_HEADERS = [(b"content-type", b"application/json")]
_decode_submission = msgspec.json.Decoder(JobSubmission).decode


class Declined(Exception):
    """Raised before any side effect, to hand the request to the handler."""


class Route(NamedTuple):
    """What an instance needs of the handler it answers, looked up once, at its first request."""

    kind: str  # SUBMIT or READ
    job_service: Provide  # the handler's dependency, called as Litestar calls it
    max_body: int | None


class JobsFastPath:
    """ASGI middleware answering the handlers marked ``opt={FAST_PATH: SUBMIT | READ}`` itself.

    Litestar builds one instance per route handler (``middleware=`` of the app), so each instance looks at
    its handler once."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app  # the rest of the route: Litestar's handler, which answers everything else
        self.learned = False
        self.route: Route | None = None  # None: a handler this middleware passes every request to

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self.learned:
            self.route = route_of(scope["route_handler"])
            self.learned = True
        route = self.route
        if route is None or scope["type"] != ScopeType.HTTP or scope["query_string"]:
            await self.app(scope, receive, send)
        elif route.kind == SUBMIT:
            await self._submit(route, scope, receive, send)
        else:
            await self._read(route, scope, send)

    async def _submit(self, route: Route, scope: HTTPScope, receive: Receive, send: Send) -> None:
        received: list[ReceiveMessage] = []
        try:
            body = await _read_body(scope, receive, received, route.max_body)
            submission = _decode_submission(body)
        except Exception:  # Declined, or a body the handler refuses with its own status and message
            await self.app(scope, _replay(received, receive), send)
            return
        submitted = await submit_job(await _job_service(route), submission)
        await _send_json(send, 202, submitted.body, [(b"location", submitted.location.encode())])

    async def _read(self, route: Route, scope: HTTPScope, send: Send) -> None:
        body = await read_job(await _job_service(route), scope["path_params"]["job_id"])
        await _send_json(send, 200, body, [])


def check(app: Litestar) -> None:
    """Raise if a handler this middleware answers has a layer whose effect it would skip (see the module)."""
    for route in app.routes:
        for handler in getattr(route, "route_handlers", ()):
            if not isinstance(handler, HTTPRouteHandler) or FAST_PATH not in handler.opt:
                continue
            layers = handler.ownership_layers
            skipped = [
                name
                for name in ("after_request", "after_response", "response_headers", "response_cookies")
                if any(getattr(layer, name, None) for layer in layers)
            ]
            if {getattr(layer, "before_request", None) for layer in layers} - {None, require_json_body}:
                skipped.append("before_request")
            if app.compression_config or app.csrf_config or app.allowed_hosts or handler.cache:
                skipped.append("compression, CSRF, allowed hosts or the response cache")
            if skipped:
                raise RuntimeError(
                    f"the /jobs fast path would skip {', '.join(skipped)} of {handler}: teach "
                    "entrypoints/http/fast_path.py the new behaviour, or create the app with fast_path=False"
                )


def route_of(handler: RouteHandlerType) -> Route | None:
    """The :class:`Route` of ``handler`` if it is marked with :data:`FAST_PATH`, else None."""
    kind = handler.opt.get(FAST_PATH)
    if kind not in (SUBMIT, READ) or not isinstance(handler, HTTPRouteHandler):
        return None
    return Route(
        kind=kind,
        job_service=handler.resolve_dependencies()[JOB_SERVICE],
        max_body=handler.resolve_request_max_body_size(),
    )


async def _job_service(route: Route) -> JobService:
    """The handler's job service, from its dependency as Litestar injects it (so an override is seen)."""
    service: JobService = await route.job_service()
    return service


async def _read_body(scope: HTTPScope, receive: Receive, received: list[ReceiveMessage], max_body: int | None) -> bytes:
    """The whole body, if this request is one the handler would read as JSON; else :class:`Declined`."""
    content_type = content_length = None
    for name, value in scope["headers"]:
        if name == b"content-type":
            if content_type is not None:
                raise Declined
            content_type = value
        elif name == b"content-length":
            if content_length is not None:
                raise Declined
            content_length = value
        elif name in (b"transfer-encoding", b"idempotency-key"):
            raise Declined
    if content_type != b"application/json" or content_length is None or not content_length.isdigit():
        raise Declined
    length = int(content_length)
    if length == 0 or (max_body is not None and length > max_body):
        raise Declined
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        received.append(message)
        if message["type"] != "http.request":
            raise Declined  # the client went away: the handler decides what that means
        chunk = message.get("body", b"")
        if chunk:
            chunks.append(chunk)
            size += len(chunk)
            if size > length:
                raise Declined
        if not message.get("more_body", False):
            break
    if size != length:
        raise Declined
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def _send_json(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    start: HTTPResponseStartEvent = {
        "type": "http.response.start",
        "status": status,
        "headers": [*headers, *JSON_HEADERS, (b"content-length", str(len(body)).encode())],
    }
    await send(start)
    end: HTTPResponseBodyEvent = {"type": "http.response.body", "body": body, "more_body": False}
    await send(end)


def _replay(received: list[ReceiveMessage], receive: Receive) -> Receive:
    """A ``receive`` that gives back the messages already read, then reads on."""
    if not received:
        return receive
    pending = list(received)

    async def replay() -> Any:
        if pending:
            return pending.pop(0)
        return await receive()

    return replay
