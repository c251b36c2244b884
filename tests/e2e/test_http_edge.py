"""Issue 11 at the HTTP edge, against a real ``geekblog serve`` (uvicorn): HEAD and the auth scheme (finding 10)."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from tests.e2e.conftest import Service


def test_head_and_a_lower_case_bearer_on_a_real_server(make_service: Callable[..., Service]) -> None:
    service = make_service(GEEKBLOG_API_TOKEN="t0ken")
    lower = {"Authorization": "bearer t0ken"}
    created = httpx.post(f"{service.url}/jobs", json={"task": "geekblog.add", "args": [1, 2]}, headers=lower, timeout=5)
    assert created.status_code == 202, created.text
    job = f"{service.url}/jobs/{created.json()['id']}"
    get = httpx.get(job, headers=lower, timeout=5)
    head = httpx.head(job, headers=lower, timeout=5)
    assert get.status_code == head.status_code == 200
    assert head.content == b""
    assert head.headers["content-length"] == get.headers["content-length"] == str(len(get.content))
    assert head.headers["content-type"] == get.headers["content-type"]
    assert httpx.head(f"{service.url}/health", timeout=5).status_code == 200
    assert httpx.head(job, timeout=5).status_code == 401


def test_without_a_token_only_loopback_hosts_are_answered(make_service: Callable[..., Service]) -> None:
    """Finding 6 (DNS rebinding): a page on evil.example resolving to 127.0.0.1 sends Host: evil.example."""
    service = make_service()
    for host in ("evil.example", f"evil.example:{service.port}", "127.0.0.1.nip.io"):
        refused = httpx.get(f"{service.url}/tasks", headers={"Host": host}, timeout=5)
        assert refused.status_code == 400
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["type"] == "urn:geekblog:problem:host-not-allowed"
        posted = httpx.post(
            f"{service.url}/jobs", json={"task": "geekblog.add", "args": [1, 2]}, headers={"Host": host}, timeout=5
        )
        assert posted.status_code == 400
    for host in ("localhost", f"localhost:{service.port}", "127.0.0.1", f"[::1]:{service.port}"):
        assert httpx.get(f"{service.url}/tasks", headers={"Host": host}, timeout=5).status_code == 200
    assert httpx.get(f"{service.url}/jobs", timeout=5).json()["items"] == []


def test_allowed_hosts_widen_the_list(make_service: Callable[..., Service]) -> None:
    service = make_service(GEEKBLOG_ALLOWED_HOSTS="tasks.example,127.0.0.1")
    assert httpx.get(f"{service.url}/tasks", headers={"Host": "tasks.example:8000"}, timeout=5).status_code == 200
    assert httpx.get(f"{service.url}/tasks", headers={"Host": "localhost"}, timeout=5).status_code == 400


def test_with_a_token_any_host_is_answered(make_service: Callable[..., Service]) -> None:
    service = make_service(GEEKBLOG_API_TOKEN="t0ken")
    auth = {"Host": "tasks.example", "Authorization": "Bearer t0ken"}
    assert httpx.get(f"{service.url}/tasks", headers=auth, timeout=5).status_code == 200
