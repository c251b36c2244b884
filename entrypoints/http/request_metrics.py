"""Counts each HTTP request this replica answers, by method, route template and status, and times it.

Two hooks of the Litestar app: a middleware, outermost of the routed requests' (authentication and the
``/jobs`` fast path included), notes when a routed request arrived; a ``before_send`` hook sees every
response start, those Litestar's exception handlers send (a 404 problem, a 422) and unrouted requests'
included, and counts it with its status. The route is the template (``/jobs/{job_id}``), never the raw path
with its ids: a request that matched no route counts as ``(unmatched)``, and a method outside HTTP's usual
ones as ``other``, so no client can make new series at will. The duration is the time until the response
started (for an event stream: until it opened); unrouted requests are counted, not timed.
"""

from __future__ import annotations

import time
from typing import Any

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from application.ports.metrics import Metrics

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED = "(unmatched)"
_STARTED = "geekblog.request_started"
_ROUTE = "geekblog.request_route"


class RequestMetrics:
    """The middleware and the ``before_send`` hook that count requests into ``metrics``."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def middleware(self, app: ASGIApp) -> ASGIApp:
        """Litestar middleware factory: notes the arrival time and route of each routed HTTP request in its
        scope's state."""
        return _Timed(app)

    async def before_send(self, message: Message, scope: Scope) -> None:
        if message["type"] != "http.response.start" or scope["type"] != ScopeType.HTTP:
            return
        state = _state(scope)
        started = state.get(_STARTED)
        method = scope["method"]
        self._metrics.observe_request(
            method=method if method in METHODS else "other",
            route=state.get(_ROUTE) or scope.get("path_template") or UNMATCHED,
            status=message["status"],
            seconds=None if started is None else time.perf_counter() - started,
        )


class _Timed:
    """The middleware: ``app`` (the next layer) is an attribute, as in Litestar's own middleware."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == ScopeType.HTTP:
            state = _state(scope)
            state[_STARTED] = time.perf_counter()
            state[_ROUTE] = scope.get("path_template")  # also for HEAD, answered in a copy of the scope
        await self.app(scope, receive, send)


def _state(scope: Scope) -> dict[str, Any]:
    state: dict[str, Any] = scope.setdefault("state", {})  # type: ignore[typeddict-item,assignment,unused-ignore]
    return state
