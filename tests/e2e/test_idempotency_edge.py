"""``Idempotency-Key`` against a real ``geekblog serve`` (uvicorn): a repeat through the real server and its /jobs
fast path, and a header sent twice (which the test client merges into one value; uvicorn does not)."""

from __future__ import annotations

import httpx

from tests.e2e.conftest import Service


def test_a_keyed_repeat_and_a_key_given_twice_on_a_real_server(service: Service) -> None:
    body = {"task": "geekblog.add", "args": [1, 2], "options": {"countdown": 60}}
    first = httpx.post(f"{service.url}/jobs", json=body, headers={"Idempotency-Key": "e2e-1"}, timeout=5)
    assert first.status_code == 202, first.text
    again = httpx.post(f"{service.url}/jobs", json=body, headers={"Idempotency-Key": "e2e-1"}, timeout=5)
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    assert again.headers["location"] == first.headers["location"]
    request = httpx.Request(
        "POST", f"{service.url}/jobs", json=body, headers=[("Idempotency-Key", "a"), ("Idempotency-Key", "b")]
    )
    with httpx.Client(timeout=5) as client:
        twice = client.send(request)
    assert twice.status_code == 422
    assert "given 2 times" in twice.json()["detail"]
