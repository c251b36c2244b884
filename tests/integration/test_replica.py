"""``GEEKBLOG_REPLICA``: the setting and its checks, and what ``/ready`` and ``/metrics`` say with it (which
replica answers, the counts of the shared storage apart from the jobs running in this replica)."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from entrypoints.celery_compat import create_compatible_task
from entrypoints.container import Container
from entrypoints.http.app import create_app
from entrypoints.settings import REPLICA_MAX_LENGTH, Settings, SettingsError, default_replica
from tests.support.metrics import samples, types, value

GATES: list[asyncio.Event] = []  # the running test's gate: an event per test (each test has its own loop)


@create_compatible_task(name="replica_tests.held")
async def held() -> str:
    """Runs until the test lets it finish."""
    await GATES[-1].wait()
    return "done"


class TestTheSetting:
    def test_the_default_is_the_host_name_and_the_process_id(self) -> None:
        assert Settings.from_env({}).replica == f"{socket.gethostname()}-{os.getpid()}"
        assert Settings().replica == default_replica()

    def test_a_name_from_the_environment(self) -> None:
        assert Settings.from_env({"GEEKBLOG_REPLICA": "web-1"}).replica == "web-1"
        longest = "r" * REPLICA_MAX_LENGTH
        assert Settings.from_env({"GEEKBLOG_REPLICA": longest}).replica == longest
        assert Settings.from_env({"GEEKBLOG_REPLICA": ""}).replica == default_replica(), "empty is unset"

    @pytest.mark.parametrize(
        "value",
        ["web 1", "web\t1", "web-1\n", "bell\x07", "répl", "r" * (REPLICA_MAX_LENGTH + 1)],
        ids=["space", "tab", "newline", "control", "not-ascii", "too-long"],
    )
    def test_a_name_that_a_header_or_a_label_cannot_carry_plainly_is_refused(self, value: str) -> None:
        with pytest.raises(SettingsError, match="GEEKBLOG_REPLICA"):
            Settings.from_env({"GEEKBLOG_REPLICA": value})

    def test_an_empty_name_given_directly_is_refused(self) -> None:
        with pytest.raises(SettingsError, match="GEEKBLOG_REPLICA must be 1 to"):
            Settings(replica="")

    @pytest.mark.parametrize("host", ["my host.local", "hôte", "h" * 300, ""])
    def test_the_default_is_valid_whatever_the_host_name(self, monkeypatch: pytest.MonkeyPatch, host: str) -> None:
        monkeypatch.setattr(socket, "gethostname", lambda: host)
        name = Settings().replica
        assert name.endswith(f"-{os.getpid()}") and len(name) <= REPLICA_MAX_LENGTH
        assert all("!" <= c <= "~" for c in name), name


@pytest.fixture(params=["memory", "sqlite"])
def app(request: pytest.FixtureRequest, tmp_path: Path) -> Litestar:
    persistence = request.param
    settings = Settings(
        persistence=persistence,
        db_path=str(tmp_path / "tasks.db"),
        replica="api-7",
        max_concurrent_tasks=1,
        shutdown_grace=0.5,
        task_modules=("tests.integration.test_replica",),
    )
    return create_app(Container(settings=settings))


@pytest.fixture
async def client(app: Litestar) -> AsyncIterator[AsyncTestClient[Litestar]]:
    GATES.append(asyncio.Event())
    async with AsyncTestClient(app) as test_client:
        try:
            yield test_client
        finally:
            GATES.pop().set()  # the held job finishes before the engine stops


async def submit(client: AsyncTestClient[Litestar], task: str, *args: object, **options: object) -> str:
    response = await client.post("/jobs", json={"task": task, "args": list(args), "options": options})
    assert response.status_code == 202, response.text
    job_id: str = response.json()["id"]
    return job_id


async def until_started(client: AsyncTestClient[Litestar], job_id: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while (await client.get(f"/jobs/{job_id}")).json()["state"] != "STARTED":
        assert time.monotonic() < deadline, f"{job_id} did not start within {timeout} s"
        await asyncio.sleep(0.01)


class TestReady:
    async def test_it_names_the_replica_and_counts_the_shared_queue_apart_from_the_jobs_running_here(
        self, client: AsyncTestClient[Litestar]
    ) -> None:
        await until_started(client, await submit(client, "replica_tests.held"))
        await submit(client, "geekblog.add", 1, 2, countdown=60)
        await submit(client, "geekblog.add", 1, 2)  # waits: the one slot is taken
        response = await client.get("/ready")
        assert response.status_code == 200
        assert response.headers["x-geekblog-replica"] == "api-7"
        body = response.json()
        assert body["storage"] in ("memory", "sqlite")
        assert body == {
            "status": "ok",
            "detail": None,
            "replica": "api-7",
            "storage": body["storage"],
            "shared_queue": {"waiting": 2, "running": 1},
            "running_here": 1,
        }

    async def test_not_ready_still_says_which_replica_answers(self, app: Litestar) -> None:
        response = await AsyncTestClient(app).get("/ready")  # no lifespan: the engine never started
        assert response.status_code == 503
        assert response.headers["x-geekblog-replica"] == "api-7"
        assert response.json()["replica"] == "api-7" and response.json()["shared_queue"] is None


class TestMetrics:
    async def test_the_replica_gauge_the_shared_counts_and_this_replicas_jobs(
        self, client: AsyncTestClient[Litestar]
    ) -> None:
        await until_started(client, await submit(client, "replica_tests.held"))
        await submit(client, "geekblog.add", 1, 2, countdown=60)
        response = await client.get("/metrics")
        assert response.headers["x-geekblog-replica"] == "api-7"
        text = response.text
        infos = [labels for (name, labels) in samples(text) if name == "geekblog_replica_info"]
        assert [dict(labels) for labels in infos] in (
            [{"replica": "api-7", "storage": "memory"}],
            [{"replica": "api-7", "storage": "sqlite"}],
        )
        assert types(text)["geekblog_replica_info"] == "gauge"
        for name, labels, expected in (
            ("geekblog_shared_jobs", {"state": "PENDING"}, 1),
            ("geekblog_shared_jobs", {"state": "STARTED"}, 1),
            ("geekblog_shared_jobs", {"state": "FAILURE"}, 0),  # states without jobs are kept, at zero
            ("geekblog_shared_queue_waiting", {}, 1),
            ("geekblog_replica_jobs_running", {}, 1),
            # the names from before replicas were told apart, kept: the same values
            ("geekblog_jobs_running", {}, 1),
            ("geekblog_jobs_queued", {}, 1),
            ("geekblog_jobs", {"state": "STARTED"}, 1),
        ):
            assert value(text, name, **labels) == expected, (name, labels)
