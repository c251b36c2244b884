"""The ``geekblog`` client commands, run as the real executable against a real service."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.e2e.conftest import ROOT, Service, free_port, wait_for_state

GEEKBLOG = Path(sys.executable).with_name("geekblog")


def run_cli(
    *args: str, url: str | None = None, token: str | None = None, stdin: str | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    """``geekblog ARGS`` with ``GEEKBLOG_URL=url`` (and the token, if any) and no other GEEKBLOG_ settings."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("GEEKBLOG_")}
    env["PYTHONPATH"] = str(ROOT)
    if url is not None:
        env["GEEKBLOG_URL"] = url
    if token is not None:
        env["GEEKBLOG_API_TOKEN"] = token
    return subprocess.run(
        [str(GEEKBLOG), *args], cwd=ROOT, env=env, input=stdin, capture_output=True, text=True, timeout=timeout
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], code: int, *needles: str) -> str:
    """The command exited ``code`` with one ``geekblog: ...`` line on stderr (no traceback) naming ``needles``."""
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("geekblog: "), lines
    for needle in needles:
        assert needle.lower() in lines[0].lower(), (needle, lines[0])
    return lines[0]


def submit(service: Service, task: str, *args: Any, **options: Any) -> str:
    with service.client() as client:
        response = client.post("/jobs", json={"task": task, "args": list(args), "options": options})
        assert response.status_code == 202, response.text
        job_id: str = response.json()["id"]
    return job_id


def test_submit_waits_for_the_result_and_reports_failures(service: Service) -> None:
    done = run_cli("submit", "e2e.add", "[2, 3]", "--wait", url=service.url)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "5"

    keyword = run_cli("submit", "e2e.add", "--kwargs", '{"x": 4, "y": 6}', "--wait", "--json", url=service.url)
    assert keyword.returncode == 0, keyword.stderr
    job = json.loads(keyword.stdout)
    assert (job["state"], job["result"], job["kwargs"]) == ("SUCCESS", 10, {"x": 4, "y": 6})

    failed = run_cli("submit", "e2e.fail", '["kaput"]', "--wait", url=service.url)
    assert_one_line_error(failed, 1, "FAILURE", "ValueError: kaput")
    assert failed.stdout == ""

    queued = run_cli("submit", "e2e.add", "[1, 1]", "--priority", "5", url=service.url)
    assert queued.returncode == 0, queued.stderr
    job_id = queued.stdout.strip()
    with service.client() as client:
        body = wait_for_state(client, f"/jobs/{job_id}", {"SUCCESS"})
    assert (body["result"], body["priority"]) == (2, 5)

    as_json = run_cli("submit", "e2e.add", "[1, 2]", "--countdown", "0", "--json", url=service.url)
    assert as_json.returncode == 0, as_json.stderr
    assert json.loads(as_json.stdout)["task"] == "e2e.add"


def test_submit_refuses_bad_input_with_one_line(service: Service) -> None:
    not_json = run_cli("submit", "e2e.add", "[1, 2", url=service.url)
    assert_one_line_error(not_json, 2, "ARGS must be a JSON array")
    assert not_json.stdout == ""

    not_array = run_cli("submit", "e2e.add", '{"x": 1}', url=service.url)
    assert_one_line_error(not_array, 2, "ARGS must be a JSON array", "object")

    bad_kwargs = run_cli("submit", "e2e.add", "--kwargs", "[1]", url=service.url)
    assert_one_line_error(bad_kwargs, 2, "--kwargs must be a JSON object")

    unknown = run_cli("submit", "no.such.task", "[]", url=service.url)
    assert_one_line_error(unknown, 2, "no.such.task")

    nan = run_cli("submit", "e2e.add", "[NaN, 1]", url=service.url)
    assert_one_line_error(nan, 2, "ARGS must be a JSON array", "NaN")

    with service.client() as client:
        assert client.get("/jobs").json()["items"] == []  # nothing was submitted

    # Arguments that do not fit the task's signature are refused at submission (422).
    wrong_arity = run_cli("submit", "e2e.add", "[1, 2, 3, 4]", "--wait", url=service.url)
    assert_one_line_error(wrong_arity, 2, "too many positional arguments")


def test_status_of_jobs_workflows_and_unknown_ids(service: Service) -> None:
    job_id = submit(service, "e2e.add", 20, 22)
    failed_id = submit(service, "e2e.fail", "kaput")
    with service.client() as client:
        wait_for_state(client, f"/jobs/{job_id}", {"SUCCESS"})
        wait_for_state(client, f"/jobs/{failed_id}", {"FAILURE"})
        workflow = client.post("/workflows", json={"canvas": {"chain": [{"task": "e2e.add", "args": [1, 2]}]}}).json()
        wait_for_state(client, f"/workflows/{workflow['id']}", {"SUCCESS"})

    human = run_cli("status", job_id, url=service.url)
    assert human.returncode == 0, human.stderr
    fields = dict(line.split(":", 1) for line in human.stdout.splitlines() if ":" in line)
    assert fields["id"].strip() == job_id
    assert fields["task"].strip() == "e2e.add"
    assert fields["state"].strip() == "SUCCESS"
    assert fields["attempts"].strip().startswith("1")
    assert fields["result"].strip() == "42"

    machine = run_cli("status", job_id, "--json", url=service.url)
    assert machine.returncode == 0, machine.stderr
    body = json.loads(machine.stdout)
    assert (body["id"], body["state"], body["result"]) == (job_id, "SUCCESS", 42)

    failure = run_cli("status", failed_id, url=service.url)
    assert failure.returncode == 1
    assert "ValueError: kaput" in failure.stdout

    of_workflow = run_cli("status", workflow["id"], url=service.url)
    assert of_workflow.returncode == 0, of_workflow.stderr
    assert "workflow" in of_workflow.stdout
    assert "SUCCESS" in of_workflow.stdout

    unknown = run_cli("status", "no-such-id", url=service.url)
    assert_one_line_error(unknown, 2, "no-such-id")


def test_watch_shows_progress_and_ends_with_the_final_state(service: Service) -> None:
    # A countdown keeps the job queued until the watcher has subscribed, so it sees every report.
    job_id = submit(service, "e2e.steps", 4, 0.05, countdown=1.5)
    machine = run_cli("watch", job_id, "--json", url=service.url)
    assert machine.returncode == 0, machine.stderr
    messages = [json.loads(line) for line in machine.stdout.splitlines()]
    assert messages[0]["id"] == job_id
    done = [m["progress"]["meta"]["done"] for m in messages if m.get("state") == "PROGRESS"]
    assert done == [1, 2, 3, 4]
    assert messages[-1]["state"] == "SUCCESS"
    assert messages[-1]["result"] == 4

    job_id = submit(service, "e2e.steps", 3, 0.05, countdown=1.5)
    human = run_cli("watch", job_id, url=service.url)
    assert human.returncode == 0, human.stderr
    assert "3/3" in human.stderr
    assert "#" in human.stderr
    assert human.stdout.splitlines()[-1].startswith(f"job {job_id} e2e.steps SUCCESS")
    assert "Traceback" not in human.stderr

    failed_id = submit(service, "e2e.fail", "kaput")
    failed = run_cli("watch", failed_id, url=service.url)
    assert failed.returncode == 1
    assert "FAILURE" in failed.stdout.splitlines()[-1]

    assert_one_line_error(run_cli("watch", "no-such-id", url=service.url), 2, "no-such-id")


def test_cancel_and_retry(service: Service) -> None:
    job_id = submit(service, "e2e.forever")
    with service.client() as client:
        wait_for_state(client, f"/jobs/{job_id}", {"STARTED"})

    cancelled = run_cli("cancel", job_id, url=service.url)
    assert cancelled.returncode == 0, cancelled.stderr
    assert "REVOKED" in cancelled.stdout

    again = run_cli("cancel", job_id, url=service.url)
    assert_one_line_error(again, 2, "cannot cancel", job_id)

    failed_id = submit(service, "e2e.fail", "kaput")
    with service.client() as client:
        wait_for_state(client, f"/jobs/{failed_id}", {"FAILURE"})
    retried = run_cli("retry", failed_id, "--json", url=service.url)
    assert retried.returncode == 0, retried.stderr
    assert json.loads(retried.stdout)["state"] in {"PENDING", "STARTED", "FAILURE"}
    with service.client() as client:
        body = wait_for_state(client, f"/jobs/{failed_id}", {"FAILURE"})
    assert body["attempts"] == 1  # a fresh count of attempts

    waited = run_cli("retry", failed_id, "--wait", url=service.url)
    assert_one_line_error(waited, 1, "ValueError: kaput")

    done_id = submit(service, "e2e.add", 1, 1)
    with service.client() as client:
        wait_for_state(client, f"/jobs/{done_id}", {"SUCCESS"})
    assert_one_line_error(run_cli("retry", done_id, url=service.url), 2, "cannot retry")
    assert_one_line_error(run_cli("cancel", "no-such-id", url=service.url), 2, "no-such-id")


def test_jobs_table_lists_and_filters(service: Service) -> None:
    ok_ids = [submit(service, "e2e.add", n, n) for n in range(3)]
    failed_id = submit(service, "e2e.fail")
    with service.client() as client:
        for job_id in ok_ids:
            wait_for_state(client, f"/jobs/{job_id}", {"SUCCESS"})
        wait_for_state(client, f"/jobs/{failed_id}", {"FAILURE"})

    listed = run_cli("jobs", url=service.url)
    assert listed.returncode == 0, listed.stderr
    header, *rows = listed.stdout.splitlines()
    assert header.split() == ["ID", "TASK", "STATE", "ATTEMPTS", "CREATED"]
    assert {row.split()[0] for row in rows} == {*ok_ids, failed_id}
    assert header.index("TASK") == rows[0].index(rows[0].split()[1])  # columns line up

    failures = run_cli("jobs", "--state", "FAILURE", url=service.url)
    assert failures.returncode == 0, failures.stderr
    assert [row.split()[:3] for row in failures.stdout.splitlines()[1:]] == [[failed_id, "e2e.fail", "FAILURE"]]

    page = run_cli("jobs", "--limit", "2", "--task", "e2e.add", url=service.url)
    assert page.returncode == 0, page.stderr
    assert len(page.stdout.splitlines()) == 3
    assert "--cursor" in page.stderr

    machine = run_cli("jobs", "--state", "success", "--json", url=service.url)
    assert machine.returncode == 0, machine.stderr
    assert {item["id"] for item in json.loads(machine.stdout)["items"]} == set(ok_ids)


def test_workflow_file_runs_a_nested_canvas(service: Service, tmp_path: Path) -> None:
    # add(1, 2) = 3, then the chord: add(3, 10) = 13 and add(3, 20) = 23, then total([13, 23]) = 36.
    canvas = {
        "chain": [
            {"task": "e2e.add", "args": [1, 2]},
            {
                "chord": {
                    "header": [{"task": "e2e.add", "args": [10]}, {"task": "e2e.add", "args": [20]}],
                    "body": {"task": "e2e.total"},
                }
            },
        ]
    }
    path = tmp_path / "flow.json"
    path.write_text(json.dumps({"canvas": canvas}))
    waited = run_cli("workflow", str(path), "--wait", url=service.url)
    assert waited.returncode == 0, waited.stderr
    assert waited.stdout.strip() == "36"
    assert "e2e.total" in waited.stderr  # the steps are shown as they finish

    from_stdin = run_cli("workflow", "-", "--wait", "--json", url=service.url, stdin=json.dumps(canvas))
    assert from_stdin.returncode == 0, from_stdin.stderr
    body = json.loads(from_stdin.stdout)
    assert (body["state"], body["result"], len(body["nodes"])) == ("SUCCESS", 36, 4)

    failing = {"group": [{"task": "e2e.add", "args": [1, 1]}, {"task": "e2e.fail", "args": ["broken"]}]}
    failed = run_cli("workflow", "-", "--wait", url=service.url, stdin=json.dumps(failing))
    assert failed.returncode == 1
    assert "ValueError: broken" in failed.stderr.splitlines()[-1]

    assert_one_line_error(run_cli("workflow", str(tmp_path / "missing.json"), url=service.url), 2, "missing.json")
    assert_one_line_error(run_cli("workflow", "-", url=service.url, stdin="{not json"), 2, "JSON")
    invalid = run_cli("workflow", "-", url=service.url, stdin='{"task": "no.such.task"}')
    assert_one_line_error(invalid, 2, "no.such.task")


def test_tasks_lists_the_registry(service: Service) -> None:
    listed = run_cli("tasks", url=service.url)
    assert listed.returncode == 0, listed.stderr
    rows = {line.split()[0]: line for line in listed.stdout.splitlines()[1:]}
    assert "x: int, y: int" in rows["e2e.add"]
    assert "Report PROGRESS" in rows["e2e.steps"]

    machine = run_cli("tasks", "--json", url=service.url)
    assert "e2e.add" in {task["name"] for task in json.loads(machine.stdout)}


def test_token_protected_service(make_service: Callable[..., Service]) -> None:
    service = make_service(GEEKBLOG_API_TOKEN="s3cret-token")

    refused = run_cli("tasks", url=service.url)
    assert_one_line_error(refused, 3, "401", "GEEKBLOG_API_TOKEN")

    wrong = run_cli("jobs", url=service.url, token="not-it")
    assert_one_line_error(wrong, 3, "401", "refused")

    listed = run_cli("tasks", url=service.url, token="s3cret-token")
    assert listed.returncode == 0, listed.stderr
    assert "e2e.add" in listed.stdout

    waited = run_cli("submit", "e2e.add", "[5, 6]", "--wait", url=service.url, token="s3cret-token")
    assert waited.returncode == 0, waited.stderr
    assert waited.stdout.strip() == "11"


def test_unreachable_service() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    by_env = run_cli("tasks", url=url)
    assert_one_line_error(by_env, 3, url)
    by_flag = run_cli("submit", "e2e.add", "[1, 2]", "--wait", "--url", url, url="http://127.0.0.1:9")
    assert_one_line_error(by_flag, 3, url)
    assert_one_line_error(run_cli("status", "x", "--url", "not-a-url"), 2, "--url")
