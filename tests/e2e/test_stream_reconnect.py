"""A live event stream, cut mid-way and resumed with ``Last-Event-ID`` against the real service process: the
two parts together are every event once (issue 15)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx

from tests.e2e.conftest import Service


def frames(response: httpx.Response) -> Iterator[dict[str, Any]]:
    """Each event of the stream as it arrives: its id, event name and decoded data."""
    fields: dict[str, Any] = {}
    for line in response.iter_lines():
        if line == "":
            if "data" in fields:
                yield fields
            fields = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(": ")
            fields[name] = json.loads(value) if name == "data" else value


def test_a_cut_stream_resumes_where_it_stopped(service: Service) -> None:
    with service.client() as client:
        job = client.post("/jobs", json={"task": "e2e.steps", "args": [8, 0.1]}).json()
        before: list[dict[str, Any]] = []
        with client.stream("GET", f"/jobs/{job['id']}/events") as response:
            for event in frames(response):
                before.append(event)
                if event["event"] == "progress" and event["data"]["progress"]["meta"]["done"] == 3:
                    break  # the connection closes here, the job still running
        assert before[-1]["data"]["state"] == "PROGRESS"
        after: list[dict[str, Any]] = []
        with client.stream("GET", f"/jobs/{job['id']}/events", headers={"Last-Event-ID": before[-1]["id"]}) as response:
            after.extend(frames(response))
    events = before + after
    assert len({event["id"] for event in events}) == len(events), "an event came twice"
    progress = [event["data"]["progress"]["meta"]["done"] for event in events if event["event"] == "progress"]
    assert progress == [1, 2, 3, 4, 5, 6, 7, 8], progress
    assert after[0]["event"] == "progress", "the resumed stream sends no snapshot"
    assert after[-1]["data"]["state"] == "SUCCESS" and after[-1]["data"]["result"] == 8
