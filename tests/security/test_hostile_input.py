"""Hostile input and hostile tasks: the service answers a 4xx problem (or a correct 2xx), never a 5xx, a
traceback or a hang; its memory stays bounded; only registered tasks ever run; a misbehaving task fails
its own job and nothing else.

In-process tests use Litestar's AsyncTestClient on the in-memory repository; the ones about sockets,
headers, memory and tasks that kill or block things run a real ``geekblog serve`` (uvicorn) process.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from domain.canvas import MAX_DEPTH, MAX_NODES
from entrypoints.container import Container
from entrypoints.http.app import create_app
from entrypoints.settings import Settings
from tests.e2e.conftest import Service

HOSTILE_TASKS = "tests.security.hostile_tasks"
MAX_BODY = 1_048_576
QUICK = 2.0  # seconds a refusal may take, generous for a loaded CI machine
TERMINAL = {"SUCCESS", "FAILURE", "REVOKED"}
Client = AsyncTestClient[Litestar]


# ------------------------------------------------------------------------------------------------
# helpers and fixtures
# ------------------------------------------------------------------------------------------------


def assert_problem(response: httpx.Response, *statuses: int) -> dict[str, Any]:
    """A refusal: one of ``statuses``, as ``application/problem+json`` naming the same status, no traceback."""
    assert response.status_code in statuses, (response.status_code, response.text[:300])
    assert response.headers["content-type"] == "application/problem+json", response.headers
    assert "Traceback" not in response.text
    body: dict[str, Any] = response.json()
    assert body["status"] == response.status_code and body["title"] and body["detail"], body
    return body


async def send(
    client: Client, method: str, path: str, content: bytes | str, content_type: str | None
) -> httpx.Response:
    """One request, bounded by ``QUICK`` seconds (a hang fails the test instead of stalling it)."""
    headers = {"content-type": content_type} if content_type else {}
    async with asyncio.timeout(QUICK):
        return await client.request(method, path, content=content, headers=headers)


async def post_json(client: Client, path: str, content: bytes | str) -> httpx.Response:
    return await send(client, "POST", path, content, "application/json")


async def settled(client: Client, job_id: str, timeout: float = 5.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job: dict[str, Any] = (await client.get(f"/jobs/{job_id}")).json()
        if job["state"] in TERMINAL:
            return job
        assert time.monotonic() < deadline, f"job {job_id} stayed {job['state']}"
        await asyncio.sleep(0.01)


async def stored_jobs(client: Client) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = (await client.get("/jobs", params={"limit": 500})).json()["items"]
    return items


@pytest.fixture
async def client() -> AsyncIterator[Client]:
    app = create_app(Container(settings=Settings(persistence="memory", shutdown_grace=0.5)))
    async with AsyncTestClient(app) as test_client:
        yield test_client


def nested_chain(levels: int) -> str:
    return '{"chain":[' * levels + '{"task":"geekblog.add","args":[1,2]}' + "]}" * levels


def nested_list(levels: int) -> str:
    return "[" * levels + "]" * levels


def binary_tree(depth: int, kind: str = "group") -> dict[str, Any]:
    """2**depth identical leaves: JSON cannot share a sub-canvas, so every copy is spelled out."""
    if depth == 0:
        return {"task": "geekblog.add", "args": [1, 2]}
    sub = binary_tree(depth - 1, kind)
    if kind == "chord":
        return {"chord": {"header": [sub, sub], "body": {"task": "geekblog.sum"}}}
    return {kind: [sub, sub]}


# ------------------------------------------------------------------------------------------------
# canvas bombs
# ------------------------------------------------------------------------------------------------


class TestCanvasBombs:
    @pytest.mark.parametrize(
        ("levels", "statuses"),
        [(1_000, (400, 422)), (100_000, (400, 413, 422))],
        ids=["1000-levels", "100000-levels"],
    )
    async def test_deep_nesting_is_refused_quickly(
        self, client: Client, levels: int, statuses: tuple[int, ...]
    ) -> None:
        body = '{"canvas":' + nested_chain(levels) + "}"
        started = time.monotonic()
        assert_problem(await post_json(client, "/workflows", body), *statuses)
        assert time.monotonic() - started < QUICK
        assert await stored_jobs(client) == []

    async def test_100000_levels_inside_the_body_limit_are_refused(self, client: Client) -> None:
        # 100,000 levels of '{"group":[' do not fit in 1 MiB; 100,000 levels of '[' in an argument do.
        body = '{"canvas":{"task":"geekblog.echo","args":[' + nested_list(100_000) + "]}}"
        assert len(body) < MAX_BODY
        assert_problem(await post_json(client, "/workflows", body), 400, 422)
        assert await stored_jobs(client) == []

    async def test_one_level_past_the_depth_limit_is_named(self, client: Client) -> None:
        body = await post_json(client, "/workflows", '{"canvas":' + nested_chain(MAX_DEPTH + 1) + "}")
        assert f"deeper than {MAX_DEPTH} levels" in assert_problem(body, 422)["detail"]
        within = await post_json(client, "/workflows", '{"canvas":' + nested_chain(MAX_DEPTH - 1) + "}")
        assert within.status_code == 202, within.text

    async def test_a_group_of_10001_members_is_refused(self, client: Client) -> None:
        members = [{"task": "geekblog.add", "args": [1, 2]}] * 10_001
        started = time.monotonic()
        response = await post_json(client, "/workflows", json.dumps({"canvas": {"group": members}}))
        assert f"more than {MAX_NODES} nodes" in assert_problem(response, 422)["detail"]
        assert time.monotonic() - started < QUICK
        assert await stored_jobs(client) == []

    async def test_one_mebibyte_of_tiny_members_is_refused(self, client: Client) -> None:
        tiny = '{"task":"a"},'
        count = (MAX_BODY - 40) // len(tiny)
        body = '{"canvas":{"group":[' + tiny * (count - 1) + '{"task":"a"}]}}'
        assert MAX_BODY - 100 < len(body) <= MAX_BODY
        started = time.monotonic()
        assert_problem(await post_json(client, "/workflows", body), 422)
        assert time.monotonic() - started < QUICK

    @pytest.mark.parametrize(("depth", "kind"), [(14, "group"), (13, "chain"), (12, "chord")])
    async def test_exponentially_repeated_sub_canvases_are_refused(self, client: Client, depth: int, kind: str) -> None:
        body = json.dumps({"canvas": binary_tree(depth, kind)})
        assert len(body) <= MAX_BODY
        started = time.monotonic()
        assert_problem(await post_json(client, "/workflows", body), 422)
        assert time.monotonic() - started < QUICK
        assert await stored_jobs(client) == []

    async def test_a_long_chain_of_identical_groups_is_refused(self, client: Client) -> None:
        step = {"group": [{"task": "geekblog.add", "args": [1, 2]}]}
        body = json.dumps({"canvas": {"chain": [step] * 5_001}})  # 1 + 5,001 * 2 nodes
        assert_problem(await post_json(client, "/workflows", body), 422)
        assert await stored_jobs(client) == []

    async def test_a_duplicated_key_is_read_once_and_validated(self, client: Client) -> None:
        # Whatever value a JSON parser keeps for a repeated key, it is the one validated and run.
        last_bad = await post_json(client, "/jobs", '{"task":"geekblog.add","task":"os.system","args":[1,2]}')
        assert "'os.system'" in assert_problem(last_bad, 422)["detail"]
        last_good = await post_json(client, "/jobs", '{"task":"os.system","task":"geekblog.add","args":[1,2]}')
        assert last_good.status_code == 202
        assert (await settled(client, last_good.json()["id"]))["result"] == 3


# ------------------------------------------------------------------------------------------------
# huge, deep and malformed bodies
# ------------------------------------------------------------------------------------------------


def echo_body(length: int) -> str:
    """A POST /jobs body of exactly ``length`` bytes: geekblog.echo of one string."""
    empty = json.dumps({"task": "geekblog.echo", "args": [""]})
    return json.dumps({"task": "geekblog.echo", "args": ["y" * (length - len(empty))]})


class TestBodies:
    async def test_a_body_of_exactly_the_limit_is_accepted(self, client: Client) -> None:
        body = echo_body(MAX_BODY)
        assert len(body) == MAX_BODY
        response = await post_json(client, "/jobs", body)
        assert response.status_code == 202, response.text[:300]

    @pytest.mark.parametrize("extra", [1, 4096, MAX_BODY])
    async def test_a_body_over_the_limit_is_413(self, client: Client, extra: int) -> None:
        assert_problem(await post_json(client, "/jobs", echo_body(MAX_BODY + extra)), 413)
        assert await stored_jobs(client) == []

    async def test_a_900_kib_string_argument_round_trips(self, client: Client) -> None:
        text = "".join(chr(0x20 + i % 90) for i in range(900 * 1024))
        response = await post_json(client, "/jobs", json.dumps({"task": "geekblog.echo", "args": [text]}))
        assert response.status_code == 202
        job = await settled(client, response.json()["id"])
        assert job["state"] == "SUCCESS"
        assert job["args"] == [text] and job["result"] == text

    @pytest.mark.parametrize("levels", [1, 50, 199])
    async def test_nested_arguments_within_the_json_depth_round_trip(self, client: Client, levels: int) -> None:
        value = json.loads(nested_list(levels))
        response = await post_json(client, "/jobs", json.dumps({"task": "geekblog.echo", "args": [value]}))
        assert response.status_code == 202, response.text[:300]
        assert (await settled(client, response.json()["id"]))["result"] == value

    @pytest.mark.parametrize(
        ("levels", "statuses"), [(201, (422,)), (900, (422,)), (1_000, (400, 422)), (100_000, (400, 413, 422))]
    )
    async def test_deeper_arguments_are_refused(self, client: Client, levels: int, statuses: tuple[int, ...]) -> None:
        body = '{"task":"geekblog.echo","args":[' + nested_list(levels) + "]}"
        assert_problem(await post_json(client, "/jobs", body), *statuses)
        nested_kwargs = '{"task":"geekblog.echo","kwargs":{"a":' + nested_list(levels) + "}}"
        assert_problem(await post_json(client, "/jobs", nested_kwargs), *statuses)
        assert await stored_jobs(client) == []

    @pytest.mark.parametrize(
        "body",
        [
            b"",
            b"null",
            b"[]",
            b'"geekblog.add"',
            b"\xef\xbb\xbf" + b'{"task":"geekblog.add","args":[1,2]}',  # a UTF-8 byte order mark
            b'{"task":"geekblog.add","args":[1,2]',
            b'{"task":"geekblog.add","args":[1,2]}\xff',
            b"\xff\xfe{}",
            b'{"task":"geekblog.echo","args":["\\ud800"]}',  # an unpaired surrogate escape
            b'{"task":"geekblog.echo","kwargs":{"\\udfff":1}}',
            b'{"task":"geekblog.echo","args":[NaN]}',
            b'{"task":"geekblog.echo","args":[1e400]}',
        ],
    )
    @pytest.mark.parametrize("path", ["/jobs", "/workflows"])
    async def test_malformed_json_is_a_400(self, client: Client, path: str, body: bytes) -> None:
        assert_problem(await post_json(client, path, body), 400, 422)
        assert await stored_jobs(client) == []

    @pytest.mark.parametrize(
        "body",
        [
            b'{"task":"geekblog.echo","args":["\xff\xfe"]}',
            b'{"task":"\xc3\x28"}',  # a truncated two-byte sequence
            b'{"task":"\xc0\xaf"}',  # an overlong encoding of "/"
            b'{"task":"\xed\xa0\x80"}',  # an encoded surrogate
        ],
        ids=["ff-fe", "truncated", "overlong", "surrogate"],
    )
    @pytest.mark.parametrize("path", ["/jobs", "/workflows", "/projects"])
    async def test_invalid_utf8_in_a_string_is_a_400(self, client: Client, path: str, body: bytes) -> None:
        assert_problem(await post_json(client, path, body), 400)

    async def test_a_nul_character_in_a_string_round_trips(self, client: Client) -> None:
        response = await post_json(client, "/jobs", '{"task":"geekblog.echo","args":["a\\u0000b"]}')
        assert response.status_code == 202
        assert (await settled(client, response.json()["id"]))["result"] == "a\x00b"


# ------------------------------------------------------------------------------------------------
# content types
# ------------------------------------------------------------------------------------------------

SUBMISSIONS = {
    "/jobs": b'{"task":"geekblog.add","args":[1,2]}',
    "/workflows": b'{"canvas":{"task":"geekblog.add","args":[1,2]}}',
}


class TestContentTypes:
    # A body must be sent as application/json: read as JSON whatever its content type, a text/plain
    # body would let a web page submit jobs through a browser (no CORS preflight for text/plain).
    @pytest.mark.parametrize(
        "content_type",
        [
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data",
            "multipart/form-data; boundary=x",
            None,
            "application/xml",
            "",
        ],
    )
    @pytest.mark.parametrize("path", list(SUBMISSIONS))
    async def test_a_json_body_under_another_content_type_is_a_415(
        self, client: Client, path: str, content_type: str | None
    ) -> None:
        assert_problem(await send(client, "POST", path, SUBMISSIONS[path], content_type), 415)
        assert await stored_jobs(client) == []

    @pytest.mark.parametrize("content_type", ["application/json; charset=latin-1", "application/json; charset=utf-16"])
    @pytest.mark.parametrize("path", list(SUBMISSIONS))
    async def test_a_json_body_with_a_charset_is_a_4xx_or_a_correct_202(
        self, client: Client, path: str, content_type: str
    ) -> None:
        response = await send(client, "POST", path, SUBMISSIONS[path], content_type)
        if response.status_code != 202:
            assert_problem(response, 400, 415, 422)
            return
        if path == "/jobs":
            job = await settled(client, response.json()["id"])
        else:
            node = response.json()["nodes"][0]
            job = await settled(client, node["job_id"])
        assert (job["task"], job["args"], job["result"]) == ("geekblog.add", [1, 2], 3)

    @pytest.mark.parametrize(
        ("content_type", "body"),
        [
            ("application/x-www-form-urlencoded", b"task=geekblog.add&args=1&args=2"),
            (
                "multipart/form-data; boundary=x",
                b'--x\r\nContent-Disposition: form-data; name="task"\r\n\r\nx\r\n--x--\r\n',
            ),
            ("text/plain", b"geekblog.add 1 2"),
            ("application/xml", b"<job><task>geekblog.add</task></job>"),
        ],
    )
    @pytest.mark.parametrize("path", list(SUBMISSIONS))
    async def test_a_non_json_body_is_a_415(self, client: Client, path: str, content_type: str, body: bytes) -> None:
        assert_problem(await send(client, "POST", path, body, content_type), 415)
        assert await stored_jobs(client) == []


# ------------------------------------------------------------------------------------------------
# only registered tasks ever run
# ------------------------------------------------------------------------------------------------

NOT_TASKS = [
    "os.system",
    "builtins.eval",
    "subprocess.run",
    "entrypoints.cli.main",
    "__import__",
    "../../etc/passwd",
    "geekblog.add\x00",
    "geekblog.add ",
    " geekblog.add",
    "GEEKBLOG.ADD",
    "geekblog.add\n",
    "geekblog.\u0430dd",  # a Cyrillic a
    "tests.security.hostile_tasks.touch",
    "entrypoints.builtin_tasks.add",
    "geekblog.*",
    "%s",
]


@pytest.fixture
async def hostile_client() -> AsyncIterator[Client]:
    settings = Settings(persistence="memory", shutdown_grace=0.5, task_modules=(HOSTILE_TASKS,))
    async with AsyncTestClient(create_app(Container(settings=settings))) as test_client:
        yield test_client


class TestOnlyRegisteredTasksRun:
    @pytest.mark.parametrize("name", NOT_TASKS, ids=[repr(name) for name in NOT_TASKS])
    async def test_an_unregistered_name_is_422_and_nothing_runs(
        self, hostile_client: Client, tmp_path: Path, name: str
    ) -> None:
        marker = tmp_path / "ran"
        command = f"touch {marker}"
        bodies = [
            {"task": name, "args": [command]},
            {"task": name, "args": [str(marker)]},
            {"task": name, "kwargs": {"command": command, "path": str(marker)}},
        ]
        for body in bodies:
            problem = assert_problem(await post_json(hostile_client, "/jobs", json.dumps(body)), 422)
            assert problem["type"] == "urn:geekblog:problem:unknown-task"
            assert repr(name) in problem["detail"], problem
        await asyncio.sleep(0.2)  # time for the dispatcher to run anything it might have taken
        assert not marker.exists()
        assert await stored_jobs(hostile_client) == []
        assert name not in {task["name"] for task in (await hostile_client.get("/tasks")).json()}

    @pytest.mark.parametrize("name", NOT_TASKS, ids=[repr(name) for name in NOT_TASKS])
    async def test_an_unregistered_name_anywhere_in_a_canvas_refuses_all_of_it(
        self, hostile_client: Client, tmp_path: Path, name: str
    ) -> None:
        marker = tmp_path / "ran"
        bad = {"task": name, "args": [f"touch {marker}"]}
        good = {"task": "geekblog.echo", "args": [1]}  # takes any arguments, also a previous step's result
        canvases = [
            {"chain": [good, bad]},
            {"group": [good, good, bad]},
            {"chord": {"header": [good], "body": bad}},
            {"chain": [good, {"group": [good, {"chord": {"header": [good, bad], "body": good}}]}]},
        ]
        for canvas in canvases:
            problem = assert_problem(await post_json(hostile_client, "/workflows", json.dumps({"canvas": canvas})), 422)
            assert repr(name) in problem["detail"], problem
        await asyncio.sleep(0.2)
        assert not marker.exists()
        assert await stored_jobs(hostile_client) == [], "a refused canvas left some of its steps behind"

    async def test_a_plain_function_of_a_task_module_is_not_a_task(
        self, hostile_client: Client, tmp_path: Path
    ) -> None:
        marker = tmp_path / "touched"
        for name in ("tests.security.hostile_tasks.touch", "touch", "hostile.touch"):
            response = await post_json(hostile_client, "/jobs", json.dumps({"task": name, "args": [str(marker)]}))
            assert_problem(response, 422)
        await asyncio.sleep(0.2)
        assert not marker.exists()

    async def test_the_task_list_names_no_importable_path(self, hostile_client: Client) -> None:
        names = {task["name"] for task in (await hostile_client.get("/tasks")).json()}
        assert {"geekblog.add", "geekblog.echo", "hostile.exit", "hostile.block_sync"} <= names
        assert not names & set(NOT_TASKS)


# ------------------------------------------------------------------------------------------------
# bearer token
# ------------------------------------------------------------------------------------------------

TOKEN = "s3cret-token"


@pytest.fixture
async def token_client() -> AsyncIterator[Client]:
    settings = Settings(persistence="memory", shutdown_grace=0.5, api_token=TOKEN)
    async with AsyncTestClient(create_app(Container(settings=settings))) as test_client:
        yield test_client


ROUTES = [
    ("POST", "/jobs"),
    ("GET", "/jobs"),
    ("GET", "/jobs/x"),
    ("POST", "/jobs/x/cancel"),
    ("POST", "/jobs/x/retry"),
    ("GET", "/jobs/x/events"),
    ("POST", "/workflows"),
    ("GET", "/workflows/x"),
    ("POST", "/workflows/x/cancel"),
    ("GET", "/workflows/x/events"),
    ("GET", "/projects"),
    ("POST", "/projects"),
    ("GET", "/tasks"),
    ("GET", "/ready"),
    ("GET", "/metrics"),
    ("GET", "/schema/openapi.json"),
    ("OPTIONS", "/jobs"),
]
# Not routes: the app's middleware runs after routing, so these may be 404 as well as 401 (never data).
PATH_TRICKS = ["/HEALTH", "//tasks", "/health/../tasks", "/%74asks", "/tasks%00", "/nowhere", "/schema/../tasks"]
BAD_AUTHORIZATIONS = [
    None,
    "",
    "Bearer",
    "Bearer ",
    "Bearer wrong",
    f"Bearer {TOKEN} ",
    f"Bearer  {TOKEN}",
    f"Basic {TOKEN}",
    TOKEN,
    f"Bearer {TOKEN}x",
    f"Bearer {TOKEN[:-1]}",
    "Bearer " + "a" * 65_536,
]


class TestBearerToken:
    @pytest.mark.parametrize(("method", "path"), ROUTES, ids=[f"{m} {p}" for m, p in ROUTES])
    async def test_every_route_but_health_needs_the_token(self, token_client: Client, method: str, path: str) -> None:
        for authorization in BAD_AUTHORIZATIONS:
            headers = {} if authorization is None else {"authorization": authorization}
            async with asyncio.timeout(QUICK):
                response = await token_client.request(method, path, headers=headers, content=SUBMISSIONS.get(path, b""))
            assert_problem(response, 401)
            assert response.headers["www-authenticate"].startswith("Bearer")
        assert await self._nothing_stored(token_client)

    @pytest.mark.parametrize("path", PATH_TRICKS)
    async def test_path_tricks_never_reach_a_route_without_the_token(self, token_client: Client, path: str) -> None:
        async with asyncio.timeout(QUICK):
            response = await token_client.get(path, headers={"authorization": "Bearer wrong"})
        assert_problem(response, 401, 404)

    async def test_health_needs_no_token_and_the_token_works(self, token_client: Client) -> None:
        for path in ("/health", "/health/"):  # the router strips the trailing slash: both are /health
            response = await token_client.get(path)
            assert response.status_code == 200 and response.json() == {"status": "ok", "detail": None}
        ok = await token_client.get("/tasks", headers={"authorization": f"Bearer {TOKEN}"})
        assert ok.status_code == 200 and ok.json()

    async def test_a_bogus_authorization_is_ignored_when_no_token_is_set(self, client: Client) -> None:
        for value in (b"Bearer nope", b"Basic Zm9vOmJhcg==", b"x" * 65_536, b"Bearer \xff\xfe"):
            response = await client.get("/tasks", headers={"authorization": value})
            assert response.status_code == 200, response.text[:200]

    @staticmethod
    async def _nothing_stored(token_client: Client) -> bool:
        page = await token_client.get("/jobs", headers={"authorization": f"Bearer {TOKEN}"})
        return page.status_code == 200 and page.json()["items"] == []


# ------------------------------------------------------------------------------------------------
# a real server: raw sockets, headers, memory
# ------------------------------------------------------------------------------------------------


def start_service(directory: Path, **env: str) -> Service:
    directory.mkdir(parents=True, exist_ok=True)
    extra = {"GEEKBLOG_TASK_MODULES": f"tests.e2e.service_tasks,{HOSTILE_TASKS}", "GEEKBLOG_MODE": "production"}
    service = Service(db_path=directory / "service.db", log_path=directory / "service.log", extra_env={**extra, **env})
    service.start()
    return service


def stop_service(service: Service) -> None:
    if service.process is not None and service.process.poll() is None:
        service.stop(signal.SIGTERM, timeout=10)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    service = start_service(tmp_path_factory.mktemp("server"))
    yield service
    stop_service(service)


def exchange(service: Service, request: bytes, timeout: float = QUICK) -> tuple[int | None, bytes]:
    """Send raw bytes; the response status, or None if the server sent nothing before closing or ``timeout``."""
    received = b""
    with socket.create_connection(("127.0.0.1", service.port), timeout=timeout) as sock:
        with contextlib.suppress(OSError):  # the server may close as soon as it has read enough to refuse
            sock.sendall(request)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                chunk = sock.recv(65_536)
                if not chunk:
                    break
                received += chunk
                if _complete(received):
                    break
        except (TimeoutError, ConnectionResetError):
            pass
    if not received.startswith(b"HTTP/1.1 "):
        return None, received
    return int(received[9:12]), received


def _complete(received: bytes) -> bool:
    head, separator, body = received.partition(b"\r\n\r\n")
    if not separator:
        return False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value)
    return False


def assert_alive(service: Service) -> None:
    assert service.process is not None and service.process.poll() is None, service.log()[-2000:]
    assert httpx.get(f"{service.url}/health", timeout=QUICK).status_code == 200


def head(service: Service, request_line: bytes, *headers: bytes) -> bytes:
    lines = [request_line, b"Host: 127.0.0.1:%d" % service.port, *headers]
    return b"\r\n".join(lines) + b"\r\n\r\n"


JOB = b'{"task":"geekblog.add","args":[1,2]}'


def post_head(service: Service, *headers: bytes) -> bytes:
    return head(service, b"POST /jobs HTTP/1.1", b"Content-Type: application/json", *headers)


class TestRawHttp:
    @pytest.mark.parametrize(
        "build",
        [
            pytest.param(lambda s: head(s, b"GET /health HTTP/1.1", b"X-Big: " + b"a" * 65_536), id="64KiB-header"),
            pytest.param(
                lambda s: head(s, b"GET /tasks HTTP/1.1", b"X-Big: " + b"a" * 65_536), id="64KiB-header-on-a-route"
            ),
            pytest.param(
                lambda s: head(s, b"GET /health HTTP/1.1", *(b"X-H%d: v" % i for i in range(500))), id="500-headers"
            ),
            pytest.param(
                lambda s: head(s, b"GET /jobs HTTP/1.1", *(b"X-H%d: %s" % (i, b"v" * 120) for i in range(500))),
                id="500-long-headers",
            ),
            pytest.param(
                lambda s: head(s, b"GET /tasks HTTP/1.1", b"Authorization: Bearer bogus"), id="bogus-authorization"
            ),
            pytest.param(
                lambda s: head(s, b"GET /tasks HTTP/1.1", b"Authorization: Bearer \xff\xfe\x00"),
                id="binary-authorization",
            ),
            pytest.param(lambda s: head(s, b"GET /" + b"a" * 100_000 + b" HTTP/1.1"), id="100KB-path"),
            pytest.param(lambda s: head(s, b"GET /jobs?" + b"a=1&" * 20_000 + b" HTTP/1.1"), id="20000-query-params"),
            pytest.param(lambda s: head(s, b"GET /jobs?state=%ff%fe HTTP/1.1"), id="bad-percent-encoding"),
            pytest.param(lambda s: head(s, b"GET /jobs/%00 HTTP/1.1"), id="nul-in-path"),
            pytest.param(lambda s: head(s, b"BREW /jobs HTTP/1.1"), id="unknown-method"),
            pytest.param(lambda s: head(s, b"GET /health HTTP/9.9"), id="bad-version"),
            pytest.param(lambda s: b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(64)), id="tls-hello"),
            pytest.param(lambda s: post_head(s, b"Content-Length: %d" % (len(JOB) - 10)) + JOB, id="length-smaller"),
            pytest.param(lambda s: post_head(s, b"Content-Length: 99999999999") + JOB, id="length-huge"),
            pytest.param(lambda s: post_head(s, b"Content-Length: -5") + JOB, id="length-negative"),
            pytest.param(lambda s: post_head(s, b"Content-Length: 5", b"Content-Length: 50") + JOB, id="length-twice"),
            pytest.param(lambda s: post_head(s, b"Content-Length: abc") + JOB, id="length-not-a-number"),
            pytest.param(
                lambda s: (
                    post_head(s, b"Transfer-Encoding: chunked")
                    + b"%x\r\n" % (2 * MAX_BODY)
                    + b"a" * (2 * MAX_BODY)
                    + b"\r\n0\r\n\r\n"
                ),
                id="chunked-2MiB",
            ),
            pytest.param(
                lambda s: post_head(s, b"Transfer-Encoding: chunked") + b"zz\r\nabc\r\n0\r\n\r\n",
                id="chunk-size-garbage",
            ),
            pytest.param(lambda s: post_head(s, b"Transfer-Encoding: gzip, chunked") + JOB, id="unknown-coding"),
        ],
    )
    def test_abuse_is_refused_or_served_never_a_5xx(self, server: Service, build: Callable[[Service], bytes]) -> None:
        status, raw = exchange(server, build(server))
        assert status is None or status < 500, raw[:500]
        assert b"Traceback" not in raw
        assert_alive(server)

    @pytest.mark.parametrize(
        "request_bytes",
        [
            pytest.param(lambda s: post_head(s, b"Content-Length: %d" % (len(JOB) + 100)) + JOB, id="length-bigger"),
            pytest.param(lambda s: head(s, b"GET /health HTTP/1.1")[:-4] + b"\r\nX-Partial: ", id="headers-unfinished"),
            pytest.param(
                lambda s: post_head(s, b"Transfer-Encoding: chunked") + b"ffffff\r\nabc", id="chunk-unfinished"
            ),
            pytest.param(
                lambda s: post_head(s, b"Content-Length: 36", b"Transfer-Encoding: chunked") + JOB,
                id="length-and-chunked",
            ),
        ],
    )
    def test_a_request_promising_more_bytes_than_it_sends_holds_only_its_own_connection(
        self, server: Service, request_bytes: Callable[[Service], bytes]
    ) -> None:
        """The server may wait for the promised bytes (HTTP cannot tell slow from lying), but it must not
        answer 5xx, and every other client is served meanwhile; closing the socket ends it."""
        with socket.create_connection(("127.0.0.1", server.port), timeout=QUICK) as sock:
            sock.sendall(request_bytes(server))
            sock.settimeout(1.0)
            try:
                answer = sock.recv(65_536)
            except TimeoutError:
                answer = b""  # still waiting for the rest: allowed
            assert not answer or answer.startswith(b"HTTP/1.1 4"), answer[:300]
            started = time.monotonic()
            assert_alive(server)
            with httpx.Client(base_url=server.url, timeout=QUICK) as other:
                assert other.post("/jobs", content=JOB, headers={"content-type": "application/json"}).status_code == 202
            assert time.monotonic() - started < QUICK
        assert_alive(server)

    def test_many_stalled_connections_do_not_stop_the_service(self, server: Service) -> None:
        stalled = []
        try:
            for _ in range(50):
                sock = socket.create_connection(("127.0.0.1", server.port), timeout=QUICK)
                sock.sendall(post_head(server, b"Content-Length: 1000") + b"{")
                stalled.append(sock)
            assert_alive(server)
        finally:
            for sock in stalled:
                sock.close()
        assert_alive(server)


def vm_rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


class TestBoundedMemory:
    def test_rss_stays_bounded_across_200_abusive_requests(self, server: Service) -> None:
        tiny = '{"task":"a"},'
        count = (MAX_BODY - 40) // len(tiny)
        abusive: list[tuple[str, bytes, int]] = [
            ("/jobs", b'{"task":"geekblog.echo","args":["' + b"z" * MAX_BODY + b'"]}', 413),
            ("/workflows", ('{"canvas":{"group":[' + tiny * (count - 1) + '{"task":"a"}]}}').encode(), 422),
            ("/jobs", ('{"task":"geekblog.echo","args":[' + nested_list(100_000) + "]}").encode(), 400),
            ("/jobs", b'{"task":"os.system","args":["' + b"q" * 900_000 + b'"]}', 422),
            ("/workflows", json.dumps({"canvas": binary_tree(14)}).encode(), 422),
            ("/workflows", ('{"canvas":' + nested_chain(1_000) + "}").encode(), 400),
        ]
        assert server.process is not None
        with httpx.Client(base_url=server.url, timeout=10) as http:

            def round_of(requests: int) -> None:
                for index in range(requests):
                    path, body, status = abusive[index % len(abusive)]
                    response = http.post(path, content=body, headers={"content-type": "application/json"})
                    assert response.status_code == status, (path, response.status_code, response.text[:200])

            round_of(2 * len(abusive))  # warm up: imports, caches, allocator arenas
            before = vm_rss_bytes(server.process.pid)
            round_of(200)
            after = vm_rss_bytes(server.process.pid)
        assert after - before < 50 * 1024 * 1024, f"RSS grew by {(after - before) / 2**20:.1f} MiB"
        assert_alive(server)


# ------------------------------------------------------------------------------------------------
# tasks that misbehave (a real server, tests.security.hostile_tasks)
# ------------------------------------------------------------------------------------------------


@pytest.fixture
def release(tmp_path: Path) -> Iterator[str]:
    """A file whose creation ends every blocking hostile task given it; created at teardown in any case."""
    path = tmp_path / "release"
    yield str(path)
    path.touch()


def submit(http: httpx.Client, task: str, *args: Any, **options: Any) -> str:
    kwargs = options.pop("kwargs", {})
    response = http.post("/jobs", json={"task": task, "args": list(args), "kwargs": kwargs, "options": options})
    assert response.status_code == 202, response.text
    job_id: str = response.json()["id"]
    return job_id


def wait_job(http: httpx.Client, job_id: str, timeout: float = 5.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job: dict[str, Any] = http.get(f"/jobs/{job_id}").json()
        if job["state"] in TERMINAL or time.monotonic() > deadline:
            return job
        time.sleep(0.02)


def wait_job_through_stalls(http: httpx.Client, job_id: str, timeout: float) -> dict[str, Any]:
    """:func:`wait_job` on a service whose event loop may be blocked: a request that times out is made again,
    until the job has ended (failing after ``timeout`` seconds)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            job: dict[str, Any] = http.get(f"/jobs/{job_id}").json()
        except httpx.TimeoutException:
            job = {"state": "no answer"}
        if job["state"] in TERMINAL:
            return job
        assert time.monotonic() < deadline, f"job {job_id} did not end within {timeout} s (last: {job['state']})"
        time.sleep(0.02)


def assert_others_complete(http: httpx.Client, timeout: float = 3.0) -> None:
    sync_job = submit(http, "hostile.quick_sync", 21)
    async_job = submit(http, "hostile.quick_async", 14)
    chained = http.post(
        "/workflows",
        json={"canvas": {"chain": [{"task": "geekblog.add", "args": [1, 2]}, {"task": "geekblog.add", "args": [4]}]}},
    ).json()
    assert wait_job(http, sync_job, timeout)["result"] == 42
    assert wait_job(http, async_job, timeout)["result"] == 42
    deadline = time.monotonic() + timeout
    while http.get(f"/workflows/{chained['id']}").json()["state"] != "SUCCESS":
        assert time.monotonic() < deadline, "a workflow did not finish"
        time.sleep(0.02)


@pytest.fixture
def http(server: Service) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=QUICK) as client:
        yield client


class TestHostileTasks:
    @pytest.mark.parametrize(
        ("task", "error"),
        [
            ("hostile.exit", "SystemExit"),
            ("hostile.async_exit", "SystemExit"),
            ("hostile.interrupt", "KeyboardInterrupt"),
            ("hostile.async_interrupt", "KeyboardInterrupt"),
        ],
    )
    def test_exit_and_interrupt_fail_their_job_only(
        self, server: Service, http: httpx.Client, task: str, error: str
    ) -> None:
        job = wait_job(http, submit(http, task))
        assert (job["state"], job["error"]["type"]) == ("FAILURE", error), job
        assert_alive(server)
        assert_others_complete(http)

    @pytest.mark.parametrize("task", ["hostile.block_sync", "hostile.block_async"])
    def test_blocking_past_the_time_limit_fails_that_job_only(
        self, server: Service, http: httpx.Client, release: str, task: str
    ) -> None:
        started = time.monotonic()
        job = wait_job(http, submit(http, task, time_limit=0.3, kwargs={"release": release, "cap": 20}))
        assert (job["state"], job["error"]["type"]) == ("FAILURE", "TimeLimitExceeded"), job
        assert time.monotonic() - started < 3.0
        # the sync task's thread still sleeps (Python cannot stop it); the rest of the service does not care
        assert_alive(server)
        assert_others_complete(http)

    def test_a_task_refusing_cancellation_does_not_stop_the_others(
        self, server: Service, http: httpx.Client, release: str
    ) -> None:
        submit(http, "hostile.refuse_cancel", time_limit=0.3, kwargs={"release": release, "cap": 20})
        time.sleep(0.5)
        assert_alive(server)
        assert_others_complete(http)

    def test_a_task_refusing_cancellation_still_fails_at_its_time_limit(
        self, server: Service, http: httpx.Client, release: str
    ) -> None:
        job_id = submit(http, "hostile.refuse_cancel", time_limit=0.3, kwargs={"release": release, "cap": 20})
        job = wait_job(http, job_id, timeout=3.0)
        assert (job["state"], (job["error"] or {}).get("type")) == ("FAILURE", "TimeLimitExceeded"), job

    @pytest.mark.xfail(
        strict=True,
        reason="LIMITATION: an async task that blocks the event loop (time.sleep, CPU work) freezes the whole "
        "service, /health included; its time limit cannot fire while the loop is blocked",
    )
    def test_an_async_task_blocking_the_loop_does_not_freeze_the_service(
        self, server: Service, http: httpx.Client
    ) -> None:
        job_id = submit(http, "hostile.block_loop", 2.5, time_limit=0.3)
        watch_until = time.monotonic() + 2.0  # the loop is blocked for 2.5 s from the moment the job starts
        try:
            while time.monotonic() < watch_until:
                assert httpx.get(f"{server.url}/health", timeout=1.0).status_code == 200
                time.sleep(0.05)
        finally:
            # the loop is back once the task has returned: its job has ended (the next test needs the loop)
            wait_job_through_stalls(http, job_id, timeout=15.0)
            assert_alive(server)


@pytest.fixture
def small_server(tmp_path: Path) -> Iterator[Service]:
    service = start_service(tmp_path / "small", GEEKBLOG_MAX_CONCURRENT_TASKS="2")
    yield service
    stop_service(service)


class TestThreadStarvation:
    def test_sync_jobs_still_run_after_max_concurrent_blockers_timed_out(
        self, small_server: Service, release: str
    ) -> None:
        with httpx.Client(base_url=small_server.url, timeout=QUICK) as http:
            blockers = [
                submit(http, "hostile.block_sync", time_limit=0.2, kwargs={"release": release}) for _ in range(2)
            ]
            for blocker in blockers:
                assert wait_job(http, blocker)["state"] == "FAILURE"
            assert wait_job(http, submit(http, "hostile.quick_async", 1), 3.0)["state"] == "SUCCESS"
            assert wait_job(http, submit(http, "hostile.quick_sync", 1), 3.0)["state"] == "SUCCESS"
