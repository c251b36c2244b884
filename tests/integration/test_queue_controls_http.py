"""Queue controls through the HTTP API (Litestar's AsyncTestClient), the settings and the CLI: a job's queue
shown, malformed names refused with a 422, depths in ``GET /queues`` and ``/metrics``, ``GEEKBLOG_QUEUES``
and ``geekblog worker --queues`` validated."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from entrypoints.cli import build_parser
from entrypoints.http.app import create_app
from entrypoints.settings import Settings, SettingsError
from tests.integration.conftest import Storage
from tests.integration.test_queue_controls_python import limited
from tests.support.metrics import value


@pytest.fixture
async def client(storage: Storage) -> AsyncIterator[AsyncTestClient[Litestar]]:
    container = storage.container(task_modules=("tests.integration.compat_tasks",), queues="default:2,ai")
    async with AsyncTestClient(create_app(container)) as test_client:
        yield test_client


async def post_job(client: AsyncTestClient[Litestar], **options: Any) -> Any:
    response = await client.post(
        "/jobs", json={"task": "geekblog.add", "args": [1, 2], "options": {"countdown": 3600, **options}}
    )
    assert response.status_code == 202, response.text
    return response.json()


class TestQueuesOverHttp:
    async def test_a_job_shows_its_queue_default_when_none_given(self, client: AsyncTestClient[Litestar]) -> None:
        plain = await post_job(client)
        routed = await post_job(client, routing_key="reports")
        assert plain["queue"] == "default" and routed["queue"] == "reports"
        shown = (await client.get(f"/jobs/{routed['id']}")).json()
        assert (shown["queue"], shown["routing_key"]) == ("reports", "reports")

    @pytest.mark.parametrize("name", ["", "a b", "a,b", "a:2", "x" * 201])
    async def test_a_malformed_queue_is_a_422(self, client: AsyncTestClient[Litestar], name: object) -> None:
        for option in ("queue", "routing_key"):
            response = await client.post(
                "/jobs", json={"task": "geekblog.add", "args": [1, 2], "options": {option: name}}
            )
            assert response.status_code == 422, response.text
            assert option in response.text
            canvas = {"task": "geekblog.add", "args": [1, 2], "options": {option: name}}
            response = await client.post("/workflows", json={"canvas": {"chain": [canvas]}})
            assert response.status_code == 422, response.text

    async def test_jobs_are_listed_by_queue(self, client: AsyncTestClient[Litestar]) -> None:
        ai = await post_job(client, queue="ai")
        routed = await post_job(client, routing_key="ai")
        plain = await post_job(client)
        listed = (await client.get("/jobs", params={"queue": "ai"})).json()
        assert [job["id"] for job in listed["items"]] == [routed["id"], ai["id"]]
        assert [job["id"] for job in (await client.get("/jobs?queue=default")).json()["items"]] == [plain["id"]]
        assert (await client.get("/jobs", params={"queue": "ai", "state": "SUCCESS"})).json()["items"] == []
        assert (await client.get("/jobs", params={"queue": "nowhere"})).json()["items"] == []
        schema = (await client.get("/schema/openapi.json")).json()
        parameters = schema["paths"]["/jobs"]["get"]["parameters"]
        assert "queue" in {parameter["name"] for parameter in parameters}

    async def test_depths_per_queue_in_queues_and_metrics(self, client: AsyncTestClient[Litestar]) -> None:
        await post_job(client, queue="ai")
        await post_job(client, queue="ai")
        await post_job(client, queue="reports")
        response = await client.get("/queues")
        assert response.status_code == 200
        assert response.json() == [
            {"name": "ai", "waiting": 2, "served_here": True, "concurrency_here": None},
            {"name": "default", "waiting": 0, "served_here": True, "concurrency_here": 2},
            {"name": "reports", "waiting": 1, "served_here": False, "concurrency_here": None},
        ]
        text = (await client.get("/metrics")).text
        assert value(text, "geekblog_shared_queue_depth", queue="ai") == 2
        assert value(text, "geekblog_shared_queue_depth", queue="reports") == 1

    @pytest.mark.parametrize("option", ["queue", "routing_key"])
    async def test_a_queue_that_is_no_string_is_a_422_naming_it(
        self, client: AsyncTestClient[Litestar], option: str
    ) -> None:
        response = await client.post("/jobs", json={"task": "geekblog.add", "args": [1, 2], "options": {option: 7}})
        assert response.status_code == 422, response.text
        problem = response.json()
        assert problem["type"] == "urn:geekblog:problem:invalid-call-option"
        assert problem["detail"].startswith(f"{option} must be a queue name")
        node = {"task": "geekblog.add", "args": [1, 2], "options": {option: 7}}
        response = await client.post("/workflows", json={"canvas": {"chain": [node]}})
        assert response.status_code == 422, response.text
        assert response.json()["detail"].startswith(f"canvas.chain[0].options.{option}: {option} must be a queue")
        schedule = {"name": "s", "task": "geekblog.add", "args": [1, 2], "every": 60, "options": {option: 7}}
        response = await client.post("/schedules", json=schedule)
        assert response.status_code == 422, response.text
        assert option in response.json()["detail"]

    async def test_other_options_of_the_wrong_type_stay_400s(self, client: AsyncTestClient[Litestar]) -> None:
        response = await client.post(
            "/jobs", json={"task": "geekblog.add", "args": [1, 2], "options": {"priority": "high"}}
        )
        assert response.status_code == 400 and "options.priority" in response.text

    async def test_the_openapi_document_describes_them(self, client: AsyncTestClient[Litestar]) -> None:
        schema = (await client.get("/schema/openapi.json")).json()
        assert "/queues" in schema["paths"]
        queue = schema["components"]["schemas"]["JobOptions"]["properties"]["queue"]
        assert "^[A-Za-z0-9_.@/+-]{1,200}$" in str(queue), queue


class TestQueueSettings:
    def test_queues_parse_with_their_concurrency(self) -> None:
        settings = Settings.from_env({"GEEKBLOG_QUEUES": "default:8, ai:2,reports"})
        assert settings.queue_limits == {"default": 8, "ai": 2, "reports": None}
        assert Settings.from_env({}).queue_limits is None

    @pytest.mark.parametrize("value", ["ai:0", "ai:x", "ai,,b", "ai,ai", "a b", "ai:-1", "ai:2:3"])
    def test_a_malformed_list_is_refused_naming_the_variable(self, value: str) -> None:
        with pytest.raises(SettingsError, match="GEEKBLOG_QUEUES"):
            Settings.from_env({"GEEKBLOG_QUEUES": value})

    def test_the_worker_takes_queues_and_refuses_a_malformed_list(self, capsys: pytest.CaptureFixture[str]) -> None:
        parser = build_parser()
        assert parser.parse_args(["worker", "--queues", "ai:2,default"]).queues == "ai:2,default"
        assert parser.parse_args(["worker", "-Q", "ai"]).queues == "ai"
        with pytest.raises(SystemExit):
            parser.parse_args(["worker", "--queues", "ai:none"])
        assert "concurrency of 'ai'" in capsys.readouterr().err


class TestConcurrencyKeysOverHttp:
    async def test_the_key_and_limit_are_stored_and_shown(self, client: AsyncTestClient[Litestar]) -> None:
        job = await post_job(client, concurrency_key="project:42", concurrency_limit=2)
        shown = (await client.get(f"/jobs/{job['id']}")).json()
        assert (shown["concurrency_key"], shown["concurrency_limit"]) == ("project:42", 2)
        plain = await post_job(client, concurrency_key="project:43")
        assert (plain["concurrency_key"], plain["concurrency_limit"]) == ("project:43", 1), "the limit defaults to 1"
        none = await post_job(client)
        assert (none["concurrency_key"], none["concurrency_limit"]) == (None, None)

    @pytest.mark.parametrize(
        "options",
        [
            {"concurrency_key": ""},
            {"concurrency_key": "x" * 201},
            {"concurrency_key": "a\nb"},
            {"concurrency_key": "k", "concurrency_limit": 0},
            {"concurrency_key": "k", "concurrency_limit": 10_001},
            {"concurrency_limit": 2},
            {"concurrency_key": 7},
            {"concurrency_key": ["k"]},
            {"concurrency_key": "k", "concurrency_limit": 1.5},
            {"concurrency_key": "k", "concurrency_limit": True},
        ],
    )
    async def test_a_malformed_one_is_a_422(self, client: AsyncTestClient[Litestar], options: dict[str, Any]) -> None:
        response = await client.post("/jobs", json={"task": "geekblog.add", "args": [1, 2], "options": options})
        assert response.status_code == 422, response.text
        assert response.json()["type"] == "urn:geekblog:problem:invalid-call-option"
        assert response.json()["detail"].split()[0] in ("concurrency_key", "concurrency_limit", "geekblog.add:")
        assert "concurrency" in response.json()["detail"]
        node = {"task": "geekblog.add", "args": [1, 2], "options": options}
        response = await client.post("/workflows", json={"canvas": {"group": [node]}})
        assert response.status_code == 422, response.text
        assert response.json()["type"] == "urn:geekblog:problem:invalid-call-option"
        assert "concurrency" in response.json()["detail"]

    async def test_the_openapi_document_describes_them(self, client: AsyncTestClient[Litestar]) -> None:
        schema = (await client.get("/schema/openapi.json")).json()["components"]["schemas"]
        assert {"concurrency_key", "concurrency_limit"} <= set(schema["JobOptions"]["properties"])
        assert {"concurrency_key", "concurrency_limit", "rate_limit"} <= set(schema["JobOut"]["properties"])


class TestRateLimitsOverHttp:
    async def test_a_tasks_rate_limit_is_shown_on_it_and_on_its_jobs(self, client: AsyncTestClient[Litestar]) -> None:
        tasks = {task["name"]: task for task in (await client.get("/tasks")).json()}
        assert tasks[limited.name]["options"]["rate_limit"] == "100/s"
        response = await client.post("/jobs", json={"task": limited.name, "args": [1]})
        assert response.status_code == 202
        shown = (await client.get(f"/jobs/{response.json()['id']}")).json()
        assert shown["rate_limit"] == "100/s"

    async def test_rate_limit_is_no_call_option_as_in_celery(self, client: AsyncTestClient[Litestar]) -> None:
        response = await client.post(
            "/jobs", json={"task": limited.name, "args": [1], "options": {"rate_limit": "1/s"}}
        )
        assert response.status_code == 400 and "rate_limit" in response.text
