"""Counts each HTTP request this replica answers, by method, route template and status, and times it.

An ASGI middleware outside every other (authentication and the ``/jobs`` fast path included), so a 401 or a
fast-path answer is counted like any other; it runs after routing, so the route is the template
(``/jobs/{job_id}``), never the raw path with its ids. Requests matching no route are not counted.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from application.ports.metrics import Metrics


def request_metrics_middleware(metrics: Metrics) -> Callable[[ASGIApp], ASGIApp]:
    """The middleware factory Litestar takes in ``middleware=[...]``, counting into ``metrics``."""

    def factory(app: ASGIApp) -> ASGIApp:
        async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != ScopeType.HTTP:
                await app(scope, receive, send)
                return
            started = time.perf_counter()
            status = 500

            async def counting_send(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                await send(message)

            try:
                await app(scope, receive, counting_send)
            finally:
                metrics.observe_request(
                    method=scope["method"],
                    route=scope.get("path_template") or scope["path"],
                    status=status,
                    seconds=time.perf_counter() - started,
                )

        return middleware

    return factory
