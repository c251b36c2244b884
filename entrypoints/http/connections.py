"""Connection hygiene for ``geekblog serve``: uvicorn's httptools protocol with the limits it lacks.

Why a subclass of uvicorn's protocol, and not settings alone or another server:

- uvicorn (0.54) gives a keep-alive timeout (``timeout_keep_alive``: armed only *after* a response)
  and ``limit_concurrency`` (a 503 for a request that arrives while that many connections or
  requests exist), but with ``http="httptools"`` nothing else: a connection that never sends a byte
  is held for ever (the keep-alive timer is not armed at connect), a slow request head or an
  incomplete body is waited for indefinitely, and httptools buffers a header line of any size (a
  200 MiB line cost 230 MiB of RSS). ``h11_max_incomplete_event_size`` caps the head only with the
  slower ``http="h11"`` protocol, which has no head or body timeouts either.
- ``limit_concurrency`` alone makes things worse under idle connections: they count, so a few
  thousand idle sockets turn every real request into a 503 while still holding the file descriptors.
- hypercorn and granian have some of these timeouts, but switching servers changes the HTTP parser
  and every byte-level behaviour the fast path and the tests rely on; the missing pieces are four
  timers and two counters on one class, all in this file.

So :func:`protocol_class` returns a subclass of :class:`HttpToolsProtocol` that adds:

- **a head timeout** (``GEEKBLOG_HEADER_TIMEOUT``): from the connection's opening, or from the first byte
  of a later request, its whole head must arrive within this many seconds; else ``408`` and close.
  A fresh connection that sends nothing is closed after it too.
- **a body timeout** (``GEEKBLOG_BODY_TIMEOUT``): from the end of the head, the whole body must arrive
  within this many seconds; else the connection is closed (the application reads ``http.disconnect``).
- **an idle keep-alive timeout** (``GEEKBLOG_KEEPALIVE_TIMEOUT``): uvicorn's own ``timeout_keep_alive``.
- **a head size cap** (``GEEKBLOG_MAX_HEADER_BYTES``): a request line plus headers larger than this is
  answered ``431`` and the connection closed, counted as bytes arrive (never more than one socket read
  past the cap is buffered) and exactly from the parser's callbacks.
- **a connection cap** (``GEEKBLOG_MAX_CONNECTIONS``): when a connection arrives with that many open, the
  connection idle the longest (no request in progress: fresh, between requests or still sending its
  head) is closed to make room, so idle sockets can never lock out real clients nor use up file
  descriptors. Only when every connection has a request in progress does the new one's request get
  ``503`` problem+json (uvicorn's ``limit_concurrency`` check, done here: uvicorn's counts idle
  connections and answers text/plain); requests in progress are capped at the same number.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from typing import Any

import httptools
import msgspec
from litestar.types import Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from entrypoints.http.problems import PROBLEM_JSON, Problem

log = logging.getLogger("geekblog.connections")


class Limits:
    """The numbers the protocol enforces (from :class:`entrypoints.settings.Settings`)."""

    def __init__(
        self,
        *,
        max_connections: int,
        keepalive_timeout: float,
        header_timeout: float,
        body_timeout: float,
        max_header_bytes: int,
    ) -> None:
        self.max_connections = max_connections
        self.keepalive_timeout = keepalive_timeout
        self.header_timeout = header_timeout
        self.body_timeout = body_timeout
        self.max_header_bytes = max_header_bytes


def _response(status: bytes, detail: str) -> bytes:
    body = detail.encode()
    return (
        b"HTTP/1.1 " + status + b"\r\ncontent-type: text/plain; charset=utf-8\r\n"
        b"content-length: " + str(len(body)).encode() + b"\r\nconnection: close\r\n\r\n" + body
    )


TIMEOUT_408 = _response(b"408 Request Timeout", "the request head did not arrive in time")
TOO_LARGE_431 = _response(b"431 Request Header Fields Too Large", "the request head is too large")


UNAVAILABLE = msgspec.json.encode(
    Problem(
        type="urn:geekblog:problem:too-many-connections",
        title="Service unavailable",
        status=503,
        detail="every connection the service takes (GEEKBLOG_MAX_CONNECTIONS) has a request in progress; try again",
    )
)


async def service_unavailable(scope: Scope, receive: Receive, send: Send) -> None:
    """The answer past the connection cap (uvicorn's is text/plain)."""
    headers = [
        (b"content-type", PROBLEM_JSON.encode()),
        (b"content-length", str(len(UNAVAILABLE)).encode()),
        (b"retry-after", b"1"),
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": 503, "headers": headers})
    await send({"type": "http.response.body", "body": UNAVAILABLE, "more_body": False})


class _HeadTooLarge(Exception):
    pass


def protocol_class(limits: Limits) -> type[HttpToolsProtocol]:
    """A protocol class for ``uvicorn.Config(http=...)`` enforcing ``limits`` (one per server)."""
    # Connections with no request in progress, least recently active first: the ones to close for room.
    idle: OrderedDict[LimitedHttpToolsProtocol, None] = OrderedDict()
    return type("LimitedHttpToolsProtocol", (LimitedHttpToolsProtocol,), {"limits": limits, "idle": idle})


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    limits: Limits
    idle: OrderedDict[LimitedHttpToolsProtocol, None]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        self._reading_head = True
        self._head_bytes = 0  # bytes received while reading the current head (an upper bound)
        self._head_size = 0  # the head's size from the parser's callbacks (exact)

    # --- connections -------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if len(self.connections) >= self.limits.max_connections:
            self._make_room()
        super().connection_made(transport)
        self.idle[self] = None
        self._head_timer = self.loop.call_later(self.limits.header_timeout, self._head_timed_out)

    def _make_room(self) -> None:
        if self.idle:
            oldest, _ = self.idle.popitem(last=False)
            self.connections.discard(oldest)  # its connection_lost comes later; it no longer counts
            oldest._close("closed to make room for a new connection")

    def connection_lost(self, exc: Exception | None) -> None:
        self.idle.pop(self, None)
        self._cancel_timers()
        super().connection_lost(exc)

    def _close(self, reason: str) -> None:
        self.idle.pop(self, None)
        self._cancel_timers()
        if self.transport is not None and not self.transport.is_closing():
            log.debug("%s: %s", self.client, reason)
            self.transport.close()

    def _cancel_timers(self) -> None:
        for timer in (self._head_timer, self._body_timer):
            if timer is not None:
                timer.cancel()
        self._head_timer = self._body_timer = None

    # --- reading -----------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        self._unset_keepalive_if_required()
        if self._reading_head:
            self._head_bytes += len(data)
            if self in self.idle:
                self.idle.move_to_end(self)
            if self._head_timer is None:  # the first byte of a later request
                self._head_timer = self.loop.call_later(self.limits.header_timeout, self._head_timed_out)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        except httptools.HttpParserError as exc:
            if isinstance(exc.__context__, _HeadTooLarge) or self._head_size > self.limits.max_header_bytes:
                self._refuse(TOO_LARGE_431, "request head too large")
                return
            self.logger.warning("Invalid HTTP request received.")
            self.send_400_response("Invalid HTTP request received.")
            return
        if self._reading_head and self._head_bytes > self.limits.max_header_bytes:
            self._refuse(TOO_LARGE_431, "request head too large")

    def _refuse(self, response: bytes, reason: str) -> None:
        log.warning("%s: %s; connection closed", self.client, reason)
        if not self.transport.is_closing():
            self.transport.write(response)
        self._close(reason)

    def _grow_head(self, size: int) -> None:
        self._head_size += size
        if self._head_size > self.limits.max_header_bytes:
            raise _HeadTooLarge

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_size = 0

    def on_url(self, url: bytes) -> None:
        self._grow_head(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._grow_head(len(name) + len(value) + 4)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._reading_head = False
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        self.idle.pop(self, None)
        self._body_timer = self.loop.call_later(self.limits.body_timeout, self._body_timed_out)
        limit = self.limits.max_connections
        if len(self.connections) > limit or len(self.tasks) >= limit:
            # uvicorn's limit_concurrency, with a problem+json answer: run this one request with it
            self.logger.warning("Exceeded concurrency limit.")
            app, self.app = self.app, service_unavailable
            try:
                super().on_headers_complete()
            finally:
                self.app = app
        else:
            super().on_headers_complete()

    def on_message_complete(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None
        self._reading_head = True
        self._head_bytes = 0
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and not self.pipeline and self.cycle.more_body is False:
            self.idle[self] = None  # between requests: waiting for the next one (or the keep-alive timeout)

    # --- timeouts ----------------------------------------------------------------------------

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self._head_bytes:
            self._refuse(TIMEOUT_408, f"request head not complete after {self.limits.header_timeout} s")
        else:
            self._close("no request")

    def _body_timed_out(self) -> None:
        self._body_timer = None
        log.warning(
            "%s: request body not complete after %s s; connection closed", self.client, self.limits.body_timeout
        )
        self._close("body timeout")
