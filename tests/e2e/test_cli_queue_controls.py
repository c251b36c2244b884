"""The ``geekblog`` client and queue controls, run as the real executable against a real service:
``geekblog jobs --queue NAME`` lists one named queue's jobs; ``geekblog submit`` sends ``--queue``,
``--expires``, ``--concurrency-key``/``--concurrency-limit`` and ``--idempotency-key``."""

from __future__ import annotations

import json

from tests.e2e.conftest import Service
from tests.e2e.test_cli import assert_one_line_error, run_cli, submit


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


def test_submit_sends_queue_controls_expiry_and_an_idempotency_key(service: Service) -> None:
    options = ["--countdown", "3600", "--queue", "ai", "--expires", "60", "--concurrency-key", "project:7"]
    first = run_cli("submit", "e2e.add", "[1, 2]", *options, "--idempotency-key", "cli-1", url=service.url)
    assert first.returncode == 0, first.stderr
    job_id = first.stdout.strip()
    with service.client() as client:
        job = client.get(f"/jobs/{job_id}").json()
    assert (job["queue"], job["concurrency_key"], job["concurrency_limit"]) == ("ai", "project:7", 1)
    assert (job["idempotency_key"], job["state"]) == ("cli-1", "PENDING")
    assert job["expires"] is not None and job["expires"] < job["due_at"]  # 60 s, before its start in an hour

    again = run_cli("submit", "e2e.add", "[1, 2]", *options, "--idempotency-key", "cli-1", url=service.url)
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == job_id  # the same command again: the same job, not a second one

    other = run_cli("submit", "e2e.add", "[2, 2]", "--idempotency-key", "cli-1", url=service.url)
    assert_one_line_error(other, 2, "cli-1", job_id)

    limited = run_cli(
        "submit", "e2e.add", "[3, 3]", "--concurrency-key", "k", "--concurrency-limit", "2", "--json", url=service.url
    )
    assert limited.returncode == 0, limited.stderr
    assert json.loads(limited.stdout)["concurrency_limit"] == 2

    done = run_cli("submit", "e2e.add", "[4, 4]", "--queue", "default", "--expires", "30", "--wait", url=service.url)
    assert (done.returncode, done.stdout.strip()) == (0, "8"), done.stderr


def test_submit_refuses_malformed_controls_with_one_line(service: Service) -> None:
    assert_one_line_error(run_cli("submit", "e2e.add", "[1, 2]", "--queue", "a b", url=service.url), 2, "queue")
    negative = run_cli("submit", "e2e.add", "[1, 2]", "--expires", "-1", url=service.url)
    assert negative.returncode == 2 and "Traceback" not in negative.stderr
    assert negative.stderr.splitlines()[-1].endswith("argument --expires: expected a number of seconds >= 0, got '-1'")
    no_key = run_cli("submit", "e2e.add", "[1, 2]", "--concurrency-limit", "2", url=service.url)
    assert_one_line_error(no_key, 2, "concurrency_limit needs a concurrency_key")
    comma = run_cli("submit", "e2e.add", "[1, 2]", "--idempotency-key", "a,b", url=service.url)
    assert_one_line_error(comma, 2, "idempotency key")
    accented = run_cli("submit", "e2e.add", "[1, 2]", "--idempotency-key", "clé", url=service.url)
    assert accented.returncode == 2 and "Traceback" not in accented.stderr
    assert "argument --idempotency-key: expected printable ASCII characters" in accented.stderr.splitlines()[-1]
    with service.client() as client:
        assert client.get("/jobs").json()["items"] == []  # nothing was submitted
