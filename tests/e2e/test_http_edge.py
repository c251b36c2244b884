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
