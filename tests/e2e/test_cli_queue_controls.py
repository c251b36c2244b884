"""The ``geekblog`` client and queue controls, run as the real executable against a real service:
``geekblog jobs --queue NAME`` lists one named queue's jobs."""

from __future__ import annotations

import json

from tests.e2e.conftest import Service
from tests.e2e.test_cli import run_cli, submit


def test_jobs_lists_one_queue(service: Service) -> None:
    ai = [submit(service, "e2e.add", n, n, queue="ai", countdown=3600) for n in range(3)]
    routed = submit(service, "e2e.add", 1, 1, routing_key="reports", countdown=3600)
    plain = submit(service, "e2e.add", 2, 2, countdown=3600)

    listed = run_cli("jobs", "--queue", "ai", url=service.url)
    assert listed.returncode == 0, listed.stderr
    assert [row.split()[0] for row in listed.stdout.splitlines()[1:]] == ai[::-1]

    machine = run_cli("jobs", "--queue", "reports", "--json", url=service.url)
    assert machine.returncode == 0, machine.stderr
    assert [(item["id"], item["queue"]) for item in json.loads(machine.stdout)["items"]] == [(routed, "reports")]

    default = run_cli("jobs", "--queue", "default", "--state", "PENDING", "--json", url=service.url)
    assert [item["id"] for item in json.loads(default.stdout)["items"]] == [plain]

    page = run_cli("jobs", "--queue", "ai", "--limit", "2", url=service.url)
    assert page.returncode == 0, page.stderr
    assert len(page.stdout.splitlines()) == 3
    assert "--queue ai" in page.stderr and "--cursor" in page.stderr  # the hint for the next page keeps it

    assert run_cli("jobs", "--queue", "nowhere", url=service.url).stdout.strip() == "no jobs"
