"""The dashboard's login session: a signed, HttpOnly, SameSite cookie standing for the API token.

A browser cannot send ``Authorization: Bearer`` on a page load or an ``EventSource``, so with
``GEEKBLOG_API_TOKEN`` set the dashboard asks for the token once (``/dashboard/login``) and sets
:data:`SESSION_COOKIE`. The cookie holds no secret: ``<issued>-<nonce>.<mac>``, where ``mac`` is an
HMAC of the first part keyed by the token. Nothing is kept on the server, so every replica sharing the
token accepts it, and changing the token ends every session.

CSRF: a request authenticated by the cookie that changes state (any method but GET, HEAD, OPTIONS) must
also carry :data:`CSRF_HEADER` with :func:`csrf_token` of its session. The pages render that value; another
site can neither read it nor (SameSite=Strict) send the cookie, and a custom header forces a CORS
preflight, which this service never grants.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Iterable

SESSION_COOKIE = "geekblog_session"
CSRF_HEADER = "x-csrf-token"
SESSION_SECONDS = 12 * 3600
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def _mac(token: bytes, purpose: str, value: str) -> str:
    return hmac.new(token, f"{purpose}:{value}".encode(), hashlib.sha256).hexdigest()


def new_session(token: bytes, now: float | None = None) -> str:
    """A fresh cookie value for ``token``, issued at ``now``."""
    issued = int(time.time() if now is None else now)
    body = f"{issued}-{secrets.token_hex(16)}"
    return f"{body}.{_mac(token, 'session', body)}"


def valid_session(value: str, token: bytes, now: float | None = None) -> bool:
    """Whether ``value`` is a session cookie signed with ``token`` and not older than :data:`SESSION_SECONDS`."""
    body, dot, mac = value.rpartition(".")
    if not dot or not hmac.compare_digest(mac, _mac(token, "session", body)):
        return False
    issued, _, _ = body.partition("-")
    if not issued.isdigit():
        return False
    age = (time.time() if now is None else now) - int(issued)
    return -60 <= age <= SESSION_SECONDS


def csrf_token(session: str, token: bytes) -> str:
    """The value :data:`CSRF_HEADER` must carry on a state-changing request of ``session``."""
    return _mac(token, "csrf", session)


def cookie_value(headers: Iterable[tuple[bytes, bytes]], name: str = SESSION_COOKIE) -> str | None:
    """The value of cookie ``name`` in a request's ``Cookie`` headers, if any."""
    wanted = name.encode()
    for header, value in headers:
        if header != b"cookie":
            continue
        for part in value.split(b";"):
            key, eq, found = part.strip().partition(b"=")
            if eq and key == wanted:
                return found.decode("latin-1")
    return None


def header_value(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    for header, value in headers:
        if header == name:
            return value
    return None
