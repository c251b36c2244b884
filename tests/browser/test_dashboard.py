"""The dashboard in a real browser against a real service: submit, watch live, cancel, retry, log in."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

from playwright.sync_api import Page, expect

from tests.browser.conftest import screenshot
from tests.e2e.conftest import Service, wait_for_state

OpenPage = Callable[[Service, str], Page]


def read(service: Service, path: str) -> dict[str, object]:
    with service.client() as client:
        body: dict[str, object] = client.get(path).json()
        return body


def submit_job(page: Page, task: str, args: list[object], kwargs: dict[str, object] | None = None) -> str:
    """Submit through the dashboard's form; it opens the job's page. Returns the job's id."""
    form = page.locator("#submit-job")
    form.locator("[name=task]").fill(task)
    form.locator("[name=args]").fill(json.dumps(args))
    form.locator("[name=kwargs]").fill(json.dumps(kwargs or {}))
    form.get_by_role("button", name="Submit job").click()
    page.wait_for_url(re.compile(r"/dashboard/jobs/[^/]+$"))
    return page.url.rsplit("/", 1)[1]


def test_a_job_submitted_in_the_dashboard_is_watched_to_the_end_live(service: Service, open_page: OpenPage) -> None:
    page = open_page(service, "/dashboard")
    job_id = submit_job(page, "e2e.steps", [4, 0.25])

    # The progress lines come only from GET /jobs/{id}/events, while the job runs.
    expect(page.locator("#timeline li", has_text='"done": 2')).to_be_visible()
    expect(page.locator("#state")).to_have_text("SUCCESS")
    expect(page.locator("#timeline li").last).to_contain_text("SUCCESS")
    expect(page.locator(".progress")).to_have_attribute("aria-valuenow", "100")
    expect(page.locator("#result")).to_have_text("4")
    expect(page.locator("#cancel")).to_be_disabled()
    assert read(service, f"/jobs/{job_id}")["state"] == "SUCCESS"
    screenshot(page, "job")

    with service.client() as client:
        failed_id = client.post("/jobs", json={"task": "e2e.fail", "options": {"max_retries": 0}}).json()["id"]
        wait_for_state(client, f"/jobs/{failed_id}", {"FAILURE"})
        schedule = {"name": "nightly-sum", "task": "e2e.add", "args": [1, 2], "cron": "0 3 * * *"}
        assert client.post("/schedules", json=schedule).status_code == 201
        later = {"task": "e2e.add", "args": [1, 1], "options": {"queue": "later", "countdown": 3600}}
        assert client.post("/jobs", json=later).status_code == 202
    page.goto("/dashboard")
    expect(page.locator(f"#jobs tr[data-id='{job_id}']")).to_contain_text("SUCCESS")
    expect(page.locator("#jobs tbody tr")).to_have_count(3)
    expect(page.locator("#throughput .bar").last).to_contain_text("2")
    expect(page.locator("#queues tbody tr", has_text="later")).to_contain_text("1")
    expect(page.locator("#schedules")).to_contain_text("nightly-sum")
    screenshot(page, "jobs")

    filters = page.locator("#filters")
    filters.locator("[name=state]").select_option("FAILURE")
    filters.get_by_role("button", name="Apply").click()
    expect(page.locator("#jobs tbody tr")).to_have_count(1)
    expect(page.locator(f"#jobs tr[data-id='{failed_id}']")).to_contain_text("e2e.fail")
    filters.locator("[name=state]").select_option("")
    filters.locator("[name=task]").fill("e2e.steps")
    filters.get_by_role("button", name="Apply").click()
    expect(page.locator("#jobs tbody tr")).to_have_count(1)
    expect(page.locator(f"#jobs tr[data-id='{job_id}']")).to_be_visible()
    filters.locator("[name=id]").fill(failed_id)
    filters.get_by_role("button", name="Apply").click()
    page.wait_for_url(f"**/dashboard/jobs/{failed_id}")
    expect(page.locator("#error-message")).to_contain_text("ValueError: boom")


def test_a_workflow_submitted_in_the_dashboard_draws_its_nodes_as_they_finish(
    service: Service, open_page: OpenPage
) -> None:
    page = open_page(service, "/dashboard")
    canvas = {
        "chain": [
            {"task": "e2e.steps", "args": [3, 0.3]},
            {
                "chord": {
                    "header": [
                        {"task": "e2e.add", "args": [1, 2], "immutable": True},
                        {"task": "e2e.add", "args": [3, 4], "immutable": True},
                    ],
                    "body": {"task": "e2e.total"},
                }
            },
        ]
    }
    page.locator("#submit-workflow [name=canvas]").fill(json.dumps(canvas))
    page.get_by_role("button", name="Submit workflow").click()
    page.wait_for_url(re.compile(r"/dashboard/workflows/[^/]+$"))
    workflow_id = page.url.rsplit("/", 1)[1]

    nodes = page.locator("#graph .node")
    expect(nodes).to_have_count(4)
    # Seen while the first step runs, then every node turns SUCCESS without a reload.
    expect(page.locator("#graph .node[data-state='WAITING']")).to_have_count(3)
    expect(page.locator("#graph .node[data-state='SUCCESS']")).to_have_count(4)
    expect(page.locator("#state")).to_have_text("SUCCESS")
    expect(page.locator("#steps tbody tr")).to_have_count(4)
    assert read(service, f"/workflows/{workflow_id}")["state"] == "SUCCESS"
    screenshot(page, "workflow")


def test_a_running_job_is_cancelled_from_its_page(service: Service, open_page: OpenPage) -> None:
    with service.client() as client:
        job_id = client.post("/jobs", json={"task": "e2e.forever"}).json()["id"]
        wait_for_state(client, f"/jobs/{job_id}", {"STARTED"})
    page = open_page(service, f"/dashboard/jobs/{job_id}")
    expect(page.locator("#state")).to_have_text("STARTED")

    page.get_by_role("button", name="Cancel").click()

    expect(page.locator("#state")).to_have_text("REVOKED")
    expect(page.locator("#retry")).to_be_enabled()
    assert read(service, f"/jobs/{job_id}")["state"] == "REVOKED"


def test_a_failed_job_is_retried_from_its_page(service: Service, open_page: OpenPage, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    with service.client() as client:
        job_id = client.post(
            "/jobs",
            json={"task": "e2e.pid", "kwargs": {"gate": str(gate), "timeout": 0.05}, "options": {"max_retries": 0}},
        ).json()["id"]
    page = open_page(service, f"/dashboard/jobs/{job_id}")
    expect(page.locator("#state")).to_have_text("FAILURE")
    expect(page.locator("#error-message")).to_contain_text("TimeoutError")
    expect(page.locator("#traceback")).to_contain_text("Traceback")
    screenshot(page, "failed-job")

    gate.write_text("open")
    page.get_by_role("button", name="Retry").click()

    expect(page.locator("#state")).to_have_text("SUCCESS")
    expect(page.locator("#error")).to_be_hidden()
    assert read(service, f"/jobs/{job_id}")["state"] == "SUCCESS"


def test_with_a_token_the_dashboard_asks_for_it_once_and_refuses_requests_without_its_csrf_header(
    make_service: Callable[..., Service], open_page: OpenPage
) -> None:
    service = make_service(GEEKBLOG_API_TOKEN="s3cret-token")
    page = open_page(service, "/dashboard")
    page.wait_for_url(re.compile(r"/dashboard/login$"))

    page.locator("[name=token]").fill("wrong")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("alert")).to_contain_text("not the service's API token")
    screenshot(page, "login")

    page.locator("[name=token]").fill("s3cret-token")
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(re.compile(r"/dashboard$"))
    (cookie,) = page.context.cookies()
    assert (cookie["name"], cookie["httpOnly"], cookie["sameSite"]) == ("geekblog_session", True, "Strict")
    assert "s3cret-token" not in cookie["value"]

    job_id = submit_job(page, "e2e.add", [2, 3])  # the form's POST /jobs carries the CSRF header
    expect(page.locator("#state")).to_have_text("SUCCESS")  # the event stream is authorised by the cookie
    expect(page.locator("#result")).to_have_text("5")

    refused = page.evaluate("async (id) => (await fetch(`/jobs/${id}/retry`, {method: 'POST'})).status", job_id)
    assert refused == 403  # the cookie alone does not change state
    page.get_by_role("button", name="Log out").click()
    page.wait_for_url(re.compile(r"/dashboard/login$"))
    assert page.context.cookies() == []
