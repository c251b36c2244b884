"""Bearer-token authentication: with ``GEEKBLOG_API_TOKEN`` set, every route but ``/health`` needs it."""

from __future__ import annotations

import hmac
from collections.abc import Iterable

import msgspec
from litestar.middleware import DefineMiddleware
from litestar.types import ASGIApp, HTTPResponseBodyEvent, HTTPResponseStartEvent, Receive, Scope, Send

from entrypoints.http.problems import PROBLEM_JSON, Problem

OPEN_PATHS = frozenset({"/health"})
UNAUTHORIZED = msgspec.json.encode(
    Problem(
        type="urn:geekblog:problem:unauthorized",
        title="Unauthorized",
        status=401,
        detail="this route needs an 'Authorization: Bearer <token>' header with the service's API token",
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
        if scope["path"] in OPEN_PATHS or authorized(scope["headers"], self.expected):
            await self.app(scope, receive, send)
            return
        start: HTTPResponseStartEvent = {
            "type": "http.response.start",
            "status": 401,
            "headers": [
                (b"content-type", PROBLEM_JSON.encode()),
                (b"www-authenticate", b'Bearer realm="geekblog"'),
                (b"content-length", str(len(UNAUTHORIZED)).encode()),
            ],
        }
        await send(start)
        end: HTTPResponseBodyEvent = {"type": "http.response.body", "body": UNAUTHORIZED, "more_body": False}
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
