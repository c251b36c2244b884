"""Allowed hosts: the ``Host`` header must name this service, so a DNS-rebinding page cannot drive it.

A web page on ``evil.example`` can make its own name resolve to 127.0.0.1 and then send requests
that the browser thinks are same-origin to ``http://evil.example:8000/``: without a token the API
would run them. Such a request carries ``Host: evil.example:8000``. So when no
``GEEKBLOG_API_TOKEN`` is set, only the loopback names ``localhost``, ``127.0.0.1`` and ``[::1]``
(with any port) are answered; ``GEEKBLOG_ALLOWED_HOSTS`` (comma-separated names, or ``*`` for any)
replaces that list, token or not. With a token and no ``GEEKBLOG_ALLOWED_HOSTS`` any host is
answered: a rebinding page cannot send the token.

Anything else gets ``400`` problem+json, whatever the route but ``/health`` (a liveness probe, which
tells nothing and is open without the token too). A request without a ``Host`` header, with two, or
with a port that is not a number is refused the same way.

:class:`HostGuard` wraps the whole ASGI application, in front of Litestar and of the ``/jobs`` fast
path inside it (``serve()`` and ``entrypoints/asgi.py`` put it there), so both answer alike by construction.
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Receive, Scope, Send, WebSocketCloseEvent

from entrypoints.http.auth import OPEN_PATHS
from entrypoints.http.problems import PROBLEM_JSON, Problem
from entrypoints.settings import Settings

LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "[::1]"})

REFUSED = msgspec.json.encode(
    Problem(
        type="urn:geekblog:problem:host-not-allowed",
        title="Bad request",
        status=400,
        detail="the Host header does not name a host this service answers for (without GEEKBLOG_API_TOKEN: "
        "localhost, 127.0.0.1 and [::1]); GEEKBLOG_ALLOWED_HOSTS sets the names",
    )
)
REFUSED_HEADERS = [(b"content-type", PROBLEM_JSON.encode()), (b"content-length", str(len(REFUSED)).encode())]


def allowed_hosts(settings: Settings) -> frozenset[str] | None:
    """The host names to answer for (lower case, no port), or ``None`` for any."""
    if settings.allowed_hosts is not None:
        names = frozenset(name.lower() for name in settings.allowed_hosts)
        return None if "*" in names else names
    return None if settings.api_token else LOOPBACK_HOSTS


def host_name(value: bytes) -> str | None:
    """The name in a ``Host`` value, lower case and without its port; ``None`` if it is malformed."""
    try:
        text = value.decode("ascii").lower()
    except UnicodeDecodeError:
        return None
    if text.startswith("["):
        name, bracket, port = text.partition("]")
        if not bracket:
            return None
        name += "]"
    else:
        name, colon, port = text.partition(":")
        port = colon + port
    if port and (not port.startswith(":") or not (port[1:].isdigit() or port == ":") or len(port) > 6):
        return None
    return name or None


class HostGuard:
    """An ASGI wrapper answering ``400`` to a request whose ``Host`` is not allowed."""

    def __init__(self, app: ASGIApp, allowed: Iterable[str]) -> None:
        self.app = app
        self.allowed = frozenset(allowed)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or scope["path"] in OPEN_PATHS or self._allowed(scope):
            await self.app(scope, receive, send)
            return
        if scope["type"] == ScopeType.WEBSOCKET:
            close: WebSocketCloseEvent = {"type": "websocket.close", "code": 1008, "reason": None}
            await send(close)
            return
        await send({"type": "http.response.start", "status": 400, "headers": REFUSED_HEADERS})
        await send({"type": "http.response.body", "body": REFUSED, "more_body": False})

    def _allowed(self, scope: Scope) -> bool:
        hosts = [value for name, value in scope["headers"] if name == b"host"]
        return len(hosts) == 1 and host_name(hosts[0]) in self.allowed


def guard_hosts(app: ASGIApp, settings: Settings) -> ASGIApp:
    """``app`` behind :class:`HostGuard` when ``settings`` restrict the hosts, else ``app`` itself."""
    allowed = allowed_hosts(settings)
    return app if allowed is None else HostGuard(app, allowed)
