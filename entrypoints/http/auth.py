"""Bearer-token authentication: with ``GEEKBLOG_API_TOKEN`` set, every route but ``/health`` needs it."""

from __future__ import annotations

import hmac
from collections.abc import Callable

import msgspec
from litestar.types import ASGIApp, HTTPResponseBodyEvent, HTTPResponseStartEvent, Receive, Scope, Send

from entrypoints.http.problems import PROBLEM_JSON, Problem

OPEN_PATHS = frozenset({"/health"})


def bearer_matches(presented: bytes, token: bytes) -> bool:
    """Whether an ``Authorization`` value is ``Bearer <token>``: the scheme in any case (RFC 9110 section 11.1:
    auth schemes are case-insensitive), one space, then exactly the token, compared in constant time."""
    scheme, space, credentials = presented.partition(b" ")
    if not space or scheme.lower() != b"bearer":
        return False
    return hmac.compare_digest(credentials, token)


def bearer_token_middleware(token: str) -> Callable[[ASGIApp], ASGIApp]:
    """An ASGI middleware factory that refuses requests without ``Authorization: Bearer <token>``."""
    expected = token.encode()
    body = msgspec.json.encode(
        Problem(
            type="urn:geekblog:problem:unauthorized",
            title="Unauthorized",
            status=401,
            detail="this route needs an 'Authorization: Bearer <token>' header with the service's API token",
        )
    )

    def factory(app: ASGIApp) -> ASGIApp:
        async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] not in ("http", "websocket") or scope["path"] in OPEN_PATHS:
                await app(scope, receive, send)
                return
            presented = b""
            for name, value in scope["headers"]:
                if name == b"authorization":
                    presented = value
                    break
            if bearer_matches(presented, expected):
                await app(scope, receive, send)
                return
            start: HTTPResponseStartEvent = {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"content-type", PROBLEM_JSON.encode()),
                    (b"www-authenticate", b'Bearer realm="geekblog"'),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
            await send(start)
            end: HTTPResponseBodyEvent = {"type": "http.response.body", "body": body, "more_body": False}
            await send(end)

        return middleware

    return factory
