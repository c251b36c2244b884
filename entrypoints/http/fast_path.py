"""A lean ASGI path for the two hottest routes, ``POST /jobs`` and ``GET /jobs/{id}``, in front of Litestar.

Litestar's request machinery (routing, dependency injection, signature models, response objects) costs
most of a small request's CPU. These two routes are answered here with the same bytes Litestar would
send: the body is decoded by msgspec straight into :class:`JobSubmission`, the job is encoded with
Litestar's own JSON encoder, and the headers are the ones the handlers in ``jobs.py`` produce.

Anything this path is not sure to answer exactly as Litestar would goes to Litestar unchanged, with
the body read so far replayed: another method or path, a query string, a root path, an authorization
header that is missing or wrong (Litestar's middleware answers 401), a content type other than exactly
``application/json`` (415 and its variants), a missing, repeated, zero or too large ``Content-Length``
or a ``Transfer-Encoding`` (400, 413), a body that does not decode into a valid ``JobSubmission``
(400 and its messages), a job id outside ``[A-Za-z0-9_-]``. All of that is decided before anything is
stored. An error raised by the engine itself (unknown task, bad arguments, storage unavailable, no
such job) is rendered by the application's own exception handlers (``problems.py``) exactly as
Litestar's exception middleware does, without a second call: a job is never submitted twice.

``tests/integration/test_http_fast_path.py`` compares the answers of an app with and without this path.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from inspect import getmro
from typing import Any, cast

import msgspec
from litestar import Litestar
from litestar.enums import ScopeType
from litestar.exceptions import HTTPException
from litestar.serialization import encode_json
from litestar.types import (
    ASGIApp,
    HTTPResponseBodyEvent,
    HTTPResponseStartEvent,
    HTTPScope,
    Receive,
    ReceiveMessage,
    Scope,
    Send,
)

from application.job_service import JobService
from entrypoints.http.auth import bearer_matches
from entrypoints.http.head import HeadAsGet
from entrypoints.http.schemas import JobOut, JobSubmission

# GET /jobs/{id}, with the trailing slash Litestar also accepts; other ids (and paths) go to Litestar.
JOB_PATH = re.compile(r"/jobs/([A-Za-z0-9_-]+)/?")
SUBMIT_PATHS = frozenset({"/jobs", "/jobs/"})
JSON_HEADERS = [(b"content-type", b"application/json")]
_decode_submission = msgspec.json.Decoder(JobSubmission).decode


class Declined(Exception):
    """Raised inside the fast path before any side effect, to hand the request to Litestar."""


class JobsFastPath:
    """The ASGI handler installed in a Litestar app (its ``asgi_handler``) by :func:`install`."""

    def __init__(self, app: Litestar, inner: ASGIApp, jobs: JobService, *, token: str | None, max_body: int) -> None:
        self.litestar = app
        self.app = inner  # Litestar's own handler: everything the fast path does not answer
        self.jobs = jobs
        self.expected_token = token.encode() if token else None
        self.max_body = max_body
        self.head = HeadAsGet(self.dispatch)  # HEAD: the GET answer without its body (``head.py``)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == ScopeType.HTTP and scope["method"] == "HEAD":
            await self.head(scope, receive, send)
        else:
            await self.dispatch(scope, receive, send)

    async def dispatch(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == ScopeType.HTTP and not scope["query_string"] and not scope.get("root_path"):
            method = scope["method"]
            path = scope["path"]
            if method == "POST" and path in SUBMIT_PATHS:
                await self._submit(scope, receive, send)
                return
            if method == "GET" and (match := JOB_PATH.fullmatch(path)) and self._authorized(scope):
                await self._get(match.group(1), scope, receive, send)
                return
        await self.app(scope, receive, send)

    def _authorized(self, scope: HTTPScope) -> bool:
        """The check of ``auth.bearer_token_middleware``: the first Authorization header (``auth.bearer_matches``)."""
        expected = self.expected_token
        if expected is None:
            return True
        for name, value in scope["headers"]:
            if name == b"authorization":
                return bearer_matches(value, expected)
        return False

    async def _submit(self, scope: HTTPScope, receive: Receive, send: Send) -> None:
        received: list[ReceiveMessage] = []
        try:
            body = await self._read_body(scope, receive, received)
            signature = _decode_submission(body).signature()
        except Exception:  # Declined, or a body Litestar refuses with its own status and message
            await self.app(scope, _replay(received, receive), send)
            return
        try:
            job = await self.jobs.submit(signature)
            body = encode_json(JobOut.of(job))
        except Exception as exc:  # the engine's refusal (nothing stored), or an error after the commit
            await self._problem(scope, receive, send, exc)
            return
        await _send_json(send, 202, body, [(b"location", f"/jobs/{job.id}".encode())])

    async def _read_body(self, scope: HTTPScope, receive: Receive, received: list[ReceiveMessage]) -> bytes:
        """The whole body, if this request is one Litestar would read as JSON; else :class:`Declined`."""
        if not self._authorized(scope):
            raise Declined
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
            elif name == b"transfer-encoding":
                raise Declined
        if content_type != b"application/json" or content_length is None or not content_length.isdigit():
            raise Declined
        length = int(content_length)
        if not 0 < length <= self.max_body:
            raise Declined
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            received.append(message)
            if message["type"] != "http.request":
                raise Declined  # the client went away: Litestar decides what that means
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

    async def _get(self, job_id: str, scope: HTTPScope, receive: Receive, send: Send) -> None:
        try:
            body = encode_json(JobOut.of(await self.jobs.get(job_id)))
        except Exception as exc:
            await self._problem(scope, receive, send, exc)
            return
        await _send_json(send, 200, body, [])

    async def _problem(self, scope: HTTPScope, receive: Receive, send: Send, exc: Exception) -> None:
        """What Litestar's exception middleware does with an error a route handler raised."""
        app = self.litestar
        handler = _exception_handler(app.exception_handlers, exc)
        request = app.request_class(scope=scope, receive=receive, send=send)
        response = handler(request, exc)
        await response.to_asgi_response(app=None, request=request, type_encoders=app.type_encoders)(
            scope=scope, receive=receive, send=send
        )


def install(app: Litestar, jobs: JobService, *, token: str | None, max_body: int) -> JobsFastPath:
    """Put the fast path in front of ``app``'s own ASGI handler; the app stays the object servers and tests use."""
    expected_middleware = 1 if token else 0
    if (
        len(app.middleware) != expected_middleware
        or app.before_send
        or app.after_exception
        or app.after_request
        or app.after_response
        or app.cors_config
        or app.allowed_hosts
        or app.compression_config
        or app.csrf_config
        or Exception not in app.exception_handlers
    ):
        raise RuntimeError(
            "the /jobs fast path answers as the app did when it was written (only the bearer-token middleware, "
            "no hooks, a handler for every Exception): teach entrypoints/http/fast_path.py the new behaviour, "
            "or create the app with fast_path=False"
        )
    fast_path = JobsFastPath(app, app.asgi_handler, jobs, token=token, max_body=max_body)
    app.asgi_handler = fast_path
    return fast_path


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


def _exception_handler(handlers: Mapping[Any, Any], exc: Exception) -> Callable[..., Any]:
    """The handler Litestar's ``get_exception_handler`` picks: by status code for an HTTPException, else the
    first class of the exception's MRO that has one, else a 500 handler (``install`` checks ``Exception`` has one)."""
    default = None
    if isinstance(exc, HTTPException):
        if handler := handlers.get(exc.status_code):
            return cast("Callable[..., Any]", handler)
    else:
        default = handlers.get(500)
    for cls in getmro(type(exc)):
        if cls in handlers:
            return cast("Callable[..., Any]", handlers[cls])
    return cast("Callable[..., Any]", default or handlers[Exception])
