"""Finding 2 of issue 11: connections are timed out and capped (``entrypoints/http/connections.py``).

Each test runs a real ``geekblog serve`` process and talks to it over loopback sockets.
"""

from __future__ import annotations

import contextlib
import os
import resource
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from entrypoints.settings import Settings, SettingsError
from tests.e2e.conftest import Service

IDLE_CONNECTIONS = 3000
SERVER_FD_LIMIT = 2048  # below IDLE_CONNECTIONS: without a cap, the idle sockets exhaust the server's descriptors


@contextlib.contextmanager
def soft_fd_limit(limit: int) -> Iterator[None]:
    """Set this process's soft RLIMIT_NOFILE (a child started meanwhile inherits it); restore it after."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < limit:
        pytest.skip(f"needs a hard RLIMIT_NOFILE of {limit}, have {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def connect(service: Service, timeout: float = 5.0) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", service.port), timeout=timeout)
    return sock


def read_until_closed(sock: socket.socket, timeout: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection, and how long that took (``inf``: not closed)."""
    started = time.monotonic()
    sock.settimeout(0.2)
    received = b""
    while time.monotonic() - started < timeout:
        try:
            chunk = sock.recv(65_536)
        except TimeoutError:
            continue
        except ConnectionResetError:
            return received, time.monotonic() - started
        if not chunk:
            return received, time.monotonic() - started
        received += chunk
    return received, float("inf")


def open_fds(service: Service) -> int:
    assert service.process is not None
    return len(os.listdir(f"/proc/{service.process.pid}/fd"))


def health_latency(service: Service) -> float:
    started = time.monotonic()
    response = httpx.get(f"{service.url}/health", timeout=5)
    elapsed = time.monotonic() - started
    assert response.status_code == 200, response.text
    return elapsed


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="counts descriptors in /proc")
def test_thousands_of_idle_connections_leave_health_fast(make_service: Callable[..., Service]) -> None:
    """3,000 idle connections against a server allowed 2,048 descriptors: the oldest idle ones are closed to
    make room (GEEKBLOG_MAX_CONNECTIONS=1000), the server's descriptors stay bounded, /health answers < 1 s."""
    with soft_fd_limit(SERVER_FD_LIMIT):
        service = make_service(GEEKBLOG_HEADER_TIMEOUT="60", GEEKBLOG_KEEPALIVE_TIMEOUT="60")
    sockets: list[socket.socket] = []
    with soft_fd_limit(IDLE_CONNECTIONS + 1024):
        try:
            for _ in range(IDLE_CONNECTIONS):
                sockets.append(connect(service))
            time.sleep(0.5)  # let the server accept the backlog
            latencies = [health_latency(service) for _ in range(5)]
            assert max(latencies) < 1.0, latencies
            fds = open_fds(service)
            assert fds <= 1000 + 64 + 16, f"the server holds {fds} descriptors"
            # the newest connections are still open and served
            newest = sockets[-1]
            newest.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            assert newest.recv(65_536).startswith(b"HTTP/1.1 200")
        finally:
            for sock in sockets:
                sock.close()
    print(f"/health latencies with {IDLE_CONNECTIONS} idle connections: {[round(x, 4) for x in latencies]} s")


def test_a_connection_that_sends_nothing_is_closed_after_the_header_timeout(
    make_service: Callable[..., Service],
) -> None:
    service = make_service(GEEKBLOG_HEADER_TIMEOUT="1")
    with connect(service) as sock:
        received, closed_after = read_until_closed(sock, timeout=5)
    assert received == b""
    assert 0.8 < closed_after < 3, closed_after


def test_a_slow_request_head_is_cut_off_with_408(make_service: Callable[..., Service]) -> None:
    service = make_service(GEEKBLOG_HEADER_TIMEOUT="1")
    with connect(service) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        for _ in range(3):  # a header line now and then, never the end of the head
            time.sleep(0.3)
            with contextlib.suppress(OSError):
                sock.sendall(b"X-Slow: 1\r\n")
        received, closed_after = read_until_closed(sock, timeout=5)
    assert received.startswith(b"HTTP/1.1 408 "), received
    assert closed_after < 3
    assert health_latency(service) < 1


def test_a_slow_body_is_cut_off(make_service: Callable[..., Service]) -> None:
    service = make_service(GEEKBLOG_BODY_TIMEOUT="1")
    body = b'{"task": "geekblog.add", "args": [1, 2]}'
    with connect(service) as sock:
        sock.sendall(
            b"POST /jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body) + body[:10]
        )
        started = time.monotonic()
        received, closed_after = read_until_closed(sock, timeout=5)
    assert closed_after < 3, (received, closed_after)
    assert time.monotonic() - started > 0.8
    assert not received.startswith(b"HTTP/1.1 2"), received
    with service.client() as client:
        assert client.get("/jobs").json()["items"] == []


def test_an_idle_keep_alive_connection_is_closed(make_service: Callable[..., Service]) -> None:
    service = make_service(GEEKBLOG_KEEPALIVE_TIMEOUT="1")
    with connect(service) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        received, closed_after = read_until_closed(sock, timeout=4)
    assert received.startswith(b"HTTP/1.1 200 "), received
    assert closed_after < 2.5, closed_after


def test_an_oversized_request_head_is_refused_with_431(make_service: Callable[..., Service]) -> None:
    service = make_service()  # GEEKBLOG_MAX_HEADER_BYTES: 16 KiB
    with connect(service) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n")
        received, closed_after = read_until_closed(sock, timeout=5)
    assert received.startswith(b"HTTP/1.1 431 "), received[:200]
    assert closed_after < 5
    # many small headers count too
    with connect(service) as sock:
        many = b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 100) for i in range(300))
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n" + many + b"\r\n")
        received, _ = read_until_closed(sock, timeout=5)
    assert received.startswith(b"HTTP/1.1 431 "), received[:200]
    # a head just under the cap is served
    with connect(service) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 15_000 + b"\r\n\r\n")
        assert sock.recv(65_536).startswith(b"HTTP/1.1 200 ")


def test_an_endless_header_line_is_cut_off_without_being_buffered(make_service: Callable[..., Service]) -> None:
    """The issue's 200 MiB header line grew RSS by 230 MiB: now the server stops reading past the cap."""
    service = make_service()
    sent = 0
    with connect(service) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ")
        chunk = b"a" * 65_536
        with contextlib.suppress(OSError):
            while sent < 64 * 2**20:
                sock.sendall(chunk)
                sent += len(chunk)
        received, _ = read_until_closed(sock, timeout=5)
    assert sent < 16 * 2**20, f"the server read {sent} bytes of one header line"
    assert received == b"" or received.startswith(b"HTTP/1.1 431 ")
    assert health_latency(service) < 1


def test_past_max_connections_busy_ones_leave_503(make_service: Callable[..., Service]) -> None:
    """With every connection busy (a request in progress), a new request gets 503; idle ones would be closed."""
    service = make_service(GEEKBLOG_MAX_CONNECTIONS="3", GEEKBLOG_BODY_TIMEOUT="30")
    busy = [connect(service) for _ in range(3)]
    try:
        for sock in busy:  # a request each, its body still to come
            sock.sendall(
                b"POST /jobs HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n"
            )
        time.sleep(0.3)
        response = httpx.get(f"{service.url}/health", timeout=5)
        assert response.status_code == 503
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["type"] == "urn:geekblog:problem:too-many-connections"
    finally:
        for sock in busy:
            sock.close()
    time.sleep(0.3)
    assert httpx.get(f"{service.url}/health", timeout=5).status_code == 200


def test_idle_connections_make_room_at_the_connection_cap(make_service: Callable[..., Service]) -> None:
    service = make_service(GEEKBLOG_MAX_CONNECTIONS="3")
    idle = [connect(service) for _ in range(10)]
    try:
        time.sleep(0.3)
        assert httpx.get(f"{service.url}/health", timeout=5).status_code == 200
        closed = 0
        for sock in idle[:7]:
            _, closed_after = read_until_closed(sock, timeout=1)
            closed += closed_after != float("inf")
        assert closed == 7  # the oldest ones, closed to make room
    finally:
        for sock in idle:
            sock.close()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("MAX_CONNECTIONS", "1"),
        ("MAX_CONNECTIONS", "many"),
        ("KEEPALIVE_TIMEOUT", "0"),
        ("HEADER_TIMEOUT", "-1"),
        ("BODY_TIMEOUT", "1e9"),
        ("MAX_HEADER_BYTES", "100"),
    ],
)
def test_connection_settings_are_validated(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=f"GEEKBLOG_{name}"):
        Settings.from_env({f"GEEKBLOG_{name}": value})


def test_connection_settings_defaults() -> None:
    settings = Settings.from_env({})
    assert (settings.max_connections, settings.keepalive_timeout, settings.header_timeout) == (1000, 5.0, 10.0)
    assert (settings.body_timeout, settings.max_header_bytes) == (30.0, 16_384)
