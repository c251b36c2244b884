"""``HEAD`` wherever ``GET`` exists (RFC 9110 section 9.3.2): the GET answer's status and headers, no body.

Installed as the app's ASGI handler in front of Litestar's (so in front of the ``/jobs`` fast path too),
so a ``HEAD`` is answered exactly as the ``GET`` is: the request goes on as a
``GET`` (in a copy of the scope: the server still knows it is a HEAD and sends no body), the body the
application sends is dropped, and once the response has started the application reads
``http.disconnect``, so an event stream stops at once instead of running on unseen.
"""

from __future__ import annotations

from typing import Any

from litestar import Litestar
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send


class HeadAsGet:
    """An ASGI wrapper answering ``HEAD`` with the ``GET`` answer's status and headers: Litestar routes a
    ``HEAD`` only where a handler declares it, and RFC 9110 wants it wherever ``GET`` is."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return
        started = False
        ended = False

        async def head_receive() -> Any:
            if started:
                return {"type": "http.disconnect"}
            return await receive()

        async def head_send(message: Message) -> None:
            nonlocal started, ended
            if message["type"] == "http.response.start":
                started = True
                await send(message)
            elif message["type"] == "http.response.body" and not ended:
                ended = True
                await send({"type": "http.response.body", "body": b"", "more_body": False})

        await self.app({**scope, "method": "GET"}, head_receive, head_send)


def install(app: Litestar) -> None:
    """Put :class:`HeadAsGet` in front of ``app``'s ASGI handler."""
    app.asgi_handler = HeadAsGet(app.asgi_handler)
