"""Bearer-token authentication: with ``GEEKBLOG_API_TOKEN`` set, every route but ``/health`` needs it.

The dashboard's pages and the API calls they make are authenticated by its session cookie instead
(``dashboard/session.py``): a state-changing request so authenticated also needs the CSRF header."""

from __future__ import annotations

import hmac
from collections.abc import Iterable

import msgspec
from litestar.middleware import DefineMiddleware
from litestar.types import ASGIApp, HTTPResponseBodyEvent, HTTPResponseStartEvent, Receive, Scope, Send

from entrypoints.http.dashboard.session import (
    CSRF_HEADER,
    SAFE_METHODS,
    cookie_value,
    csrf_token,
    header_value,
    valid_session,
)
from entrypoints.http.problems import PROBLEM_JSON, Problem

OPEN_PATHS = frozenset({"/health"})
# Open to anyone, but (unlike OPEN_PATHS) still behind the Host check: the dashboard's login form and assets.
DASHBOARD_OPEN = frozenset({"/dashboard/login"})
DASHBOARD_ASSETS = "/dashboard/static/"
UNAUTHORIZED = msgspec.json.encode(
    Problem(
        type="urn:geekblog:problem:unauthorized",
        title="Unauthorized",
        status=401,
        detail="this route needs an 'Authorization: Bearer <token>' header with the service's API token",
    )
)
CSRF_REFUSED = msgspec.json.encode(
    Problem(
        type="urn:geekblog:problem:csrf",
        title="Forbidden",
        status=403,
        detail="a state-changing request authenticated by the dashboard's cookie needs its X-CSRF-Token header",
    )
)


def bearer_matches(presented: bytes, token: bytes) -> bool:
    """Whether an ``Authorization`` value is ``Bearer <token>``: the scheme in any case (RFC 9110 section 11.1:
    auth schemes are case-insensitive), one space, then exactly the token, compared in constant time."""
    scheme, space, credentials = presented.partition(b" ")
    if not space or scheme.lower() != b"bearer":
        return False
    return hmac.compare_digest(credentials, token)


class BearerToken:
    """ASGI middleware refusing requests without ``Authorization: Bearer <token>`` (the first such header)
    with a ``401``: the service's one authorisation check, in front of every route but :data:`OPEN_PATHS`."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.expected = token.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        headers = scope["headers"]
        if (
            path in OPEN_PATHS
            or path in DASHBOARD_OPEN
            or path.startswith(DASHBOARD_ASSETS)
            or authorized(headers, self.expected)
        ):
            await self.app(scope, receive, send)
            return
        session = cookie_value(headers)
        method = str(scope.get("method", "GET"))
        if session is not None and valid_session(session, self.expected):
            presented = header_value(headers, CSRF_HEADER.encode()) or b""
            if method in SAFE_METHODS or hmac.compare_digest(presented, csrf_token(session, self.expected).encode()):
                await self.app(scope, receive, send)
                return
            await _answer(send, 403, CSRF_REFUSED, [])
            return
        if method == "GET" and (path == "/dashboard" or path.startswith("/dashboard/")):
            await _answer(send, 303, b"", [(b"location", b"/dashboard/login")])
            return
        await _answer(send, 401, UNAUTHORIZED, [(b"www-authenticate", b'Bearer realm="geekblog"')])


async def _answer(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    content_type = [(b"content-type", PROBLEM_JSON.encode())] if body else []
    start: HTTPResponseStartEvent = {
        "type": "http.response.start",
        "status": status,
        "headers": [*content_type, *headers, (b"content-length", str(len(body)).encode())],
    }
    await send(start)
    end: HTTPResponseBodyEvent = {"type": "http.response.body", "body": body, "more_body": False}
    await send(end)


def authorized(headers: Iterable[tuple[bytes, bytes]], token: bytes) -> bool:
    """Whether the first ``Authorization`` header of a request presents ``token`` (:func:`bearer_matches`)."""
    for name, value in headers:
        if name == b"authorization":
            return bearer_matches(value, token)
    return False


def bearer_token_middleware(token: str) -> DefineMiddleware:
    """:class:`BearerToken` for ``token``, for Litestar's ``middleware=``."""
    return DefineMiddleware(BearerToken, token=token)
