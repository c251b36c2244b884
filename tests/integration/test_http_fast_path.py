"""The ``/jobs`` fast path (``entrypoints/http/fast_path.py``) answers exactly as Litestar alone does.

Each request goes, as raw ASGI messages, to two apps over their own engines: one built with the fast
path, one without (``create_app(..., fast_path=False)``). Their answers must be the same messages: status,
headers in order, body; only a new job's id and times differ, and they are compared after being
replaced by placeholders. A spy behind the fast-path middleware of every route shows which requests
reached a Litestar handler (the fast path handed them on) and which the fast path answered itself (the
plain submits and reads); a request refused before any handler (401, 404, 405) reaches neither.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import re
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from litestar import Litestar, Response, post
from litestar.testing import AsyncTestClient

from adapters.sqlite import StorageError
from application.engine import Engine
from application.ports import JobFilter
from entrypoints.container import Container
from entrypoints.http.app import create_app
from entrypoints.http.content_type import require_json_body
from entrypoints.http.fast_path import FAST_PATH, SUBMIT, JobsFastPath, check
from entrypoints.settings import Settings

TOKEN = "s3cret-token"
MAX_BODY = 2048
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
ISO_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?\+00:00")
JSON = [(b"content-type", b"application/json")]
DATABASES = itertools.count()

Messages = list[dict[str, Any]]


@dataclass
class Side:
    """One app, its engine, and the requests that reached Litestar's own handler."""

    app: Litestar
    engine: Engine
    reached_litestar: list[str] = field(default_factory=list)


@dataclass
class Pair:
    fast: Side
    plain: Side

    def __iter__(self) -> Iterator[Side]:
        return iter((self.fast, self.plain))


async def call(
    app: Litestar,
    method: str,
    path: str,
    body: bytes | list[bytes] = b"",
    headers: list[tuple[bytes, bytes]] | None = None,
    *,
    query: bytes = b"",
    length: bool = True,
    disconnect: bool = False,
) -> Messages:
    """What ``app`` sends for one request (as uvicorn would pass it), body split into the chunks given."""
    chunks = body if isinstance(body, list) else [body]
    incoming: list[dict[str, Any]] = [
        {"type": "http.request", "body": chunk, "more_body": i < len(chunks) - 1} for i, chunk in enumerate(chunks)
    ]
    if disconnect:
        incoming[-1]["more_body"] = True
        incoming.append({"type": "http.disconnect"})
    never = asyncio.Event()

    async def receive() -> dict[str, Any]:
        if incoming:
            return incoming.pop(0)
        await never.wait()
        raise AssertionError("unreachable")

    sent: Messages = []

    async def send(message: Any) -> None:
        sent.append(dict(message))

    all_headers = [(b"host", b"testserver"), *(headers or [])]
    size = sum(len(chunk) for chunk in chunks)
    if length and size:
        all_headers.append((b"content-length", str(size).encode()))
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "server": ("127.0.0.1", 8000),
        "client": ("127.0.0.1", 50000),
        "scheme": "http",
        "method": method,
        "root_path": "",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "headers": all_headers,
        "state": {},
    }
    await asyncio.wait_for(app(scope, receive, send), 10)  # type: ignore[arg-type]
    return sent


def normalized(messages: Messages) -> tuple[Any, ...]:
    """The answer with a job's id and times replaced by placeholders, and its JSON body parsed."""
    assert [m["type"] for m in messages] == ["http.response.start", "http.response.body"], messages
    start, end = messages
    headers = [(name, UUID.sub("<id>", value.decode("latin-1"))) for name, value in start["headers"]]
    # Litestar lists a 405's allowed methods from a set, in no fixed order
    headers = [(name, ", ".join(sorted(value.split(", "))) if name == b"allow" else value) for name, value in headers]
    raw = end["body"]
    try:
        body: Any = json.loads(ISO_TIME.sub("<time>", UUID.sub("<id>", raw.decode())))
    except ValueError:
        body = raw
    return start["status"], headers, body, end.get("more_body", False)


@asynccontextmanager
async def running(app: Litestar) -> AsyncIterator[None]:
    """The app's lifespan on this test's loop (``AsyncTestClient`` runs it on a loop of its own)."""
    to_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    from_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": {}}
    task = asyncio.create_task(app(scope, to_app.get, from_app.put))  # type: ignore[arg-type]
    await to_app.put({"type": "lifespan.startup"})
    assert (await from_app.get())["type"] == "lifespan.startup.complete"
    try:
        yield
    finally:
        await to_app.put({"type": "lifespan.shutdown"})
        assert (await from_app.get())["type"] == "lifespan.shutdown.complete"
        await task


def fast_paths(app: Litestar) -> list[JobsFastPath]:
    """The fast-path middleware of each route handler of ``app`` (registered app-wide, in every route's stack)."""
    found = []
    nodes = [app.asgi_router.root_route_map_node]
    while nodes:
        node = nodes.pop()
        nodes.extend(node.children.values())
        for entry in node.asgi_handlers.values():
            layer: Any = entry.asgi_app
            while layer is not None and not isinstance(layer, JobsFastPath):
                layer = getattr(layer, "app", None)
            if layer is not None:
                found.append(layer)
    return found


def spy_on_litestar(side: Side) -> None:
    """Record each request that a route's fast-path middleware hands on to the route's handler."""
    found = fast_paths(side.app)
    assert len(found) > 10  # every route of the app

    for fast_path in found:
        behind = fast_path.app

        async def spy(scope: Any, receive: Any, send: Any, behind: Any = behind) -> None:
            side.reached_litestar.append(f"{scope['method']} {scope['path']}")
            await behind(scope, receive, send)

        fast_path.app = spy


@pytest.fixture(params=["memory", "sqlite"])
def persistence(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def make_pair_factory(persistence: str, tmp_path: Path, stack: AsyncExitStack) -> Callable[..., Awaitable[Pair]]:
    async def make(**changes: Any) -> Pair:
        sides = []
        for fast in (True, False):
            db = tmp_path / f"{'fast' if fast else 'plain'}-{next(DATABASES)}.db"
            settings = Settings(
                persistence=persistence,  # type: ignore[arg-type]
                db_path=str(db),
                task_modules=("tests.integration.compat_tasks",),
                max_body_bytes=MAX_BODY,
                shutdown_grace=0.5,
                **changes,
            )
            container = Container(settings=settings)
            app = create_app(container, fast_path=fast)
            await stack.enter_async_context(running(app))
            side = Side(app=app, engine=container.engine())
            if fast:
                spy_on_litestar(side)
            sides.append(side)
        return Pair(fast=sides[0], plain=sides[1])

    return make


@pytest.fixture
async def pairs(persistence: str, tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[Pair]]]:
    async with AsyncExitStack() as stack:
        yield make_pair_factory(persistence, tmp_path, stack)


@pytest.fixture
async def pair(pairs: Callable[..., Awaitable[Pair]]) -> Pair:
    return await pairs()


async def same_answer(pair: Pair, method: str, path: str, *args: Any, **kwargs: Any) -> tuple[Any, ...]:
    fast = normalized(await call(pair.fast.app, method, path, *args, **kwargs))
    plain = normalized(await call(pair.plain.app, method, path, *args, **kwargs))
    assert fast == plain
    return fast


async def stored(side: Side, limit: int = 10) -> list[str]:
    return [job.id for job in (await side.engine.jobs.list(JobFilter(), limit=limit)).items]


def submission(**fields: Any) -> bytes:
    return json.dumps({"task": "compat.add", "args": [1, 2], **fields}).encode()


# The plain cases, answered by the fast path itself: (method, path, body)
ANSWERED = [
    ("POST", "/jobs", submission()),
    ("POST", "/jobs/", submission()),
    ("POST", "/jobs//", submission()),  # Litestar routes it to POST /jobs
    ("POST", "/jobs", submission(args=[], kwargs={"x": 2, "y": 3})),
    ("POST", "/jobs", submission(options={"countdown": 30, "priority": 7, "max_retries": 1, "time_limit": 2.5})),
    ("POST", "/jobs", submission(options={"countdown": 0.25, "priority": -1000})),
    ("POST", "/jobs", submission(options={"eta": "2031-01-01T00:00:00Z"})),
    ("POST", "/jobs", submission(options={"eta": "2031-01-01T00:00:00"})),
    ("POST", "/jobs", submission(options={"eta": "2031-01-01T02:00:00+02:00"})),
    ("POST", "/jobs", b'{"task": "compat.echo", "args": ["\xc3\xa9", null, 1.5, {"a": [true]}, 12345678901234567890]}'),
    ("POST", "/jobs", b' {"task":"compat.add","args":[1,2],"task":"compat.mul"} '),  # the last key wins in both
    ("POST", "/jobs", submission(task="nope")),  # 422 unknown task, raised by the engine
    ("POST", "/jobs", submission(args=[1])),  # 422 the arguments do not fit
    ("POST", "/jobs", submission(args=[1, 2, 3], kwargs={"z": 1})),
    ("GET", "/jobs/no-such-job", b""),  # 404
    ("GET", "/jobs/no-such-job/", b""),
    ("GET", "/jobs/no such job", b""),
    ("GET", "/jobs/a.b", b""),
    ("HEAD", "/jobs/no-such-job", b""),  # HEAD is the GET without its body (issue 11, finding 10)
]

# Handed by the fast path to the route's handler: (method, path, body, headers, query)
HANDED_OVER: list[tuple[str, str, bytes, list[tuple[bytes, bytes]], bytes]] = [
    ("POST", "/jobs", b'{"task": "compat.add", "args": [1, 2', JSON, b""),  # not JSON
    ("POST", "/jobs", b"\xff\xfe", JSON, b""),  # not UTF-8
    ("POST", "/jobs", b"[" * 1000 + b"]" * 1000, JSON, b""),
    ("POST", "/jobs", b'{"task": "compat.add", "args": ' + b"[" * 1020 + b"]" * 1020 + b"}", JSON, b""),
    ("POST", "/jobs", b"null", JSON, b""),
    ("POST", "/jobs", submission(task=""), JSON, b""),
    ("POST", "/jobs", submission(args={"x": 1}), JSON, b""),
    ("POST", "/jobs", submission(surprise=1), JSON, b""),
    ("POST", "/jobs", submission(options={"priority": "high"}), JSON, b""),
    ("POST", "/jobs", submission(options={"priority": "5"}), JSON, b""),  # Litestar converts it: a 202
    ("POST", "/jobs", submission(options={"priority": 5.0}), JSON, b""),
    ("POST", "/jobs", submission(options={"time_limit": 0}), JSON, b""),
    ("POST", "/jobs", submission(options={"eta": "2031-01-01"}), JSON, b""),
    ("POST", "/jobs", submission(options={"eta": 1_900_000_000}), JSON, b""),
    ("POST", "/jobs", submission(options={"countdown": -1}), JSON, b""),
    ("POST", "/jobs", submission(options={"countdown": 1e9}), JSON, b""),  # over MAX_COUNTDOWN
    ("POST", "/jobs", submission(options={"bogus": 1}), JSON, b""),
    ("POST", "/jobs", submission(), [(b"content-type", b"text/plain")], b""),  # 415
    ("POST", "/jobs", submission(), [(b"content-type", b"application/x-www-form-urlencoded")], b""),
    ("POST", "/jobs", submission(), [], b""),  # no content type: 415
    ("POST", "/jobs", submission(), [(b"content-type", b"application/json; charset=utf-8")], b""),
    ("POST", "/jobs", submission(), [(b"content-type", b"Application/JSON")], b""),
    ("POST", "/jobs", submission(), [(b"content-type", b"application/problem+json")], b""),
    ("POST", "/jobs", submission(), [*JSON, *JSON], b""),
    ("POST", "/jobs", submission(args=["x" * (MAX_BODY + 10)]), JSON, b""),  # 413
    ("POST", "/jobs", submission(), JSON, b"wait=1"),  # a query string
    ("POST", "/jobs", b"", JSON, b""),  # no body: 400
    ("GET", "/jobs/no-such-job", b"", [], b"x=1"),
]

# Other routes, answered by their handlers (the fast path passes them on): (method, path, body, headers, query)
OTHER_ROUTES: list[tuple[str, str, bytes, list[tuple[bytes, bytes]], bytes]] = [
    ("GET", "/jobs", b"", [], b""),  # the list
    ("GET", "/jobs", b"", [], b"limit=0"),
    ("GET", "/jobs//", b"", [], b""),  # Litestar routes it to the list
    ("GET", "/jobs/x/events", b"", [], b""),
    ("POST", "/jobs/no-such-job/cancel", b"", [], b""),
    ("GET", "/health", b"", [], b""),
]

# Refused by Litestar's router before any handler: (method, path, body, headers, query)
NO_ROUTE: list[tuple[str, str, bytes, list[tuple[bytes, bytes]], bytes]] = [
    ("POST", "/jobs/abc", submission(), JSON, b""),  # 405
    ("PUT", "/jobs", submission(), JSON, b""),
    ("DELETE", "/jobs/no-such-job", b"", [], b""),
    ("GET", "/jobz", b"", [], b""),  # 404
]


class TestSameAnswers:
    @pytest.mark.parametrize(("method", "path", "body"), ANSWERED)
    async def test_answered_by_the_fast_path(self, pair: Pair, method: str, path: str, body: bytes) -> None:
        await same_answer(pair, method, path, body, JSON if body else [])
        assert pair.fast.reached_litestar == []

    @pytest.mark.parametrize(("method", "path", "body", "headers", "query"), HANDED_OVER)
    async def test_handed_to_litestar(
        self, pair: Pair, method: str, path: str, body: bytes, headers: list[tuple[bytes, bytes]], query: bytes
    ) -> None:
        await same_answer(pair, method, path, body, headers, query=query)
        assert pair.fast.reached_litestar == [f"{method} {path}"]

    @pytest.mark.parametrize(("method", "path", "body", "headers", "query"), OTHER_ROUTES)
    async def test_other_routes_are_litestars(
        self, pair: Pair, method: str, path: str, body: bytes, headers: list[tuple[bytes, bytes]], query: bytes
    ) -> None:
        await same_answer(pair, method, path, body, headers, query=query)
        assert pair.fast.reached_litestar == [f"{method} {path.rstrip('/') or '/'}"]

    @pytest.mark.parametrize(("method", "path", "body", "headers", "query"), NO_ROUTE)
    async def test_requests_without_a_route_reach_no_handler(
        self, pair: Pair, method: str, path: str, body: bytes, headers: list[tuple[bytes, bytes]], query: bytes
    ) -> None:
        status, *_ = await same_answer(pair, method, path, body, headers, query=query)
        assert status in (404, 405) and pair.fast.reached_litestar == []

    async def test_a_body_sent_in_several_chunks(self, pair: Pair) -> None:
        body = submission(args=["x" * 500, "y" * 500])
        status, *_ = await same_answer(pair, "POST", "/jobs", [body[:7], b"", body[7:900], body[900:]], JSON)
        assert status == 202 and pair.fast.reached_litestar == []

    async def test_the_body_limit_is_litestars(self, pair: Pair) -> None:
        padding = MAX_BODY - len(submission(task="compat.echo", args=[""]))
        at_the_limit = submission(task="compat.echo", args=["x" * padding])
        assert len(at_the_limit) == MAX_BODY
        status, *_ = await same_answer(pair, "POST", "/jobs", at_the_limit, JSON)
        assert status == 202 and pair.fast.reached_litestar == []
        status, *_ = await same_answer(
            pair, "POST", "/jobs", submission(task="compat.echo", args=["x" * (padding + 1)]), JSON
        )
        assert status == 413 and pair.fast.reached_litestar == ["POST /jobs"]

    async def test_a_chunked_body_goes_to_litestar(self, pair: Pair) -> None:
        headers = [*JSON, (b"transfer-encoding", b"chunked")]
        status, *_ = await same_answer(pair, "POST", "/jobs", [submission()], headers, length=False)
        assert status == 202 and pair.fast.reached_litestar == ["POST /jobs"]

    async def test_a_body_shorter_than_its_length_goes_to_litestar(self, pair: Pair) -> None:
        headers = [*JSON, (b"content-length", b"500")]
        await same_answer(pair, "POST", "/jobs", submission(), headers, length=False)
        assert pair.fast.reached_litestar == ["POST /jobs"]

    async def test_a_client_gone_mid_body_stores_nothing(self, pair: Pair) -> None:
        answers = [await call(side.app, "POST", "/jobs", submission(), JSON, disconnect=True) for side in pair]
        assert answers[0] == answers[1]
        assert await stored(pair.fast) == await stored(pair.plain) == []
        assert pair.fast.reached_litestar == ["POST /jobs"]


# Values a client may put anywhere in a submission, right or wrong.
ODD_VALUES: list[Any] = [
    None,
    True,
    0,
    1,
    -1,
    7,
    2**63,
    -(2**64),
    0.5,
    -0.0,
    1e308,
    "",
    "x",
    "5",
    "compat.add",
    "compat.echo",
    "2031-01-01T00:00:00Z",
    "2031-01-01",
    "not a date",
    [],
    [1, 2],
    [1, "2"],
    {},
    {"x": 1},
    {"y": [None]},
]
VALID_OPTIONS: dict[str, list[Any]] = {
    "countdown": [0, 1.5, 30],
    "eta": ["2031-01-01T00:00:00Z", "2031-01-01T00:00:00+01:00", "2031-01-01T00:00:00.5"],
    "priority": [0, 5, -3],
    "max_retries": [0, 2],
    "time_limit": [1, 2.5],
}


def pick(rng: random.Random, valid: list[Any]) -> Any:
    return rng.choice(valid) if rng.random() < 0.7 else rng.choice(ODD_VALUES)


def random_body(rng: random.Random) -> bytes:
    """A submission with random fields and values: valid ones more often than not."""
    document: dict[str, Any] = {}
    if rng.random() < 0.95:
        document["task"] = pick(rng, ["compat.add", "compat.add", "compat.echo", "nope"])
    if rng.random() < 0.8:
        document["args"] = pick(rng, [[1, 2], [3, 4], [], [1], [1, 2, 3]])
    if rng.random() < 0.3:
        document["kwargs"] = pick(rng, [{"x": 1, "y": 2}, {"y": 5}, {}])
    if rng.random() < 0.5:
        names = rng.sample([*VALID_OPTIONS, "bogus"], rng.randint(0, 3))
        document["options"] = {name: pick(rng, VALID_OPTIONS.get(name, [None])) for name in names}
    if rng.random() < 0.05:
        document[rng.choice(["extra", "Task", "option"])] = 1
    raw = json.dumps(document).encode()
    if rng.random() < 0.05:
        raw = raw[: rng.randrange(len(raw))]
    return raw


class TestRandomSubmissions:
    async def test_random_bodies_get_the_same_answers(self, pair: Pair) -> None:
        rng = random.Random(20261128)
        statuses: dict[tuple[int, bool], int] = {}
        for _ in range(300):
            body = random_body(rng)
            before = len(pair.fast.reached_litestar)
            status, *_ = await same_answer(pair, "POST", "/jobs", body, JSON)
            key = (status, len(pair.fast.reached_litestar) == before)
            statuses[key] = statuses.get(key, 0) + 1
        # All of these were seen: accepted and refused by the engine on the fast path, refused by Litestar
        assert statuses.get((202, True), 0) > 20 and statuses.get((422, True), 0) > 10, statuses
        assert statuses.get((400, False), 0) > 20, statuses


class TestReadingJobs:
    async def test_a_job_reads_the_same(self, pair: Pair) -> None:
        body = submission(options={"countdown": 600, "priority": 3})  # stays PENDING while it is read
        ids = []
        for side in (pair.fast, pair.plain):
            sent = await call(side.app, "POST", "/jobs", body, JSON)
            ids.append(json.loads(sent[1]["body"])["id"])
        answers = [
            normalized(await call(side.app, "GET", path))
            for side, job_id in zip((pair.fast, pair.plain), ids, strict=True)
            for path in (f"/jobs/{job_id}", f"/jobs/{job_id}/")
        ]
        assert answers[0] == answers[1] == answers[2] == answers[3]
        assert answers[0][0] == 200
        assert pair.fast.reached_litestar == []

    async def test_a_finished_job_reads_the_same(self, pair: Pair) -> None:
        ids = []
        for side in (pair.fast, pair.plain):
            sent = await call(side.app, "POST", "/jobs", submission(task="compat.echo", args=[{"a": 1}]), JSON)
            ids.append(json.loads(sent[1]["body"])["id"])
        for side, job_id in zip((pair.fast, pair.plain), ids, strict=True):
            for _ in range(500):
                if (await side.engine.jobs.get(job_id)).state.value == "SUCCESS":
                    break
                await asyncio.sleep(0.01)
        fast = normalized(await call(pair.fast.app, "GET", f"/jobs/{ids[0]}"))
        plain = normalized(await call(pair.plain.app, "GET", f"/jobs/{ids[1]}"))
        assert fast == plain
        assert fast[2]["state"] == "SUCCESS" and fast[2]["result"] == {"args": [{"a": 1}], "kwargs": {}}
        assert pair.fast.reached_litestar == []


class TestToken:
    @pytest.fixture
    async def token_pair(self, pairs: Callable[..., Awaitable[Pair]]) -> Pair:
        return await pairs(api_token=TOKEN)

    async def test_the_right_token_is_answered_by_the_fast_path(self, token_pair: Pair) -> None:
        auth = [(b"authorization", f"Bearer {TOKEN}".encode())]
        status, *_ = await same_answer(token_pair, "POST", "/jobs", submission(), [*auth, *JSON])
        assert status == 202
        status, *_ = await same_answer(token_pair, "GET", "/jobs/no-such-job", b"", auth)
        assert status == 404
        assert token_pair.fast.reached_litestar == []

    @pytest.mark.parametrize(
        "auth",
        [
            [],
            [(b"authorization", b"Bearer wrong")],
            [(b"authorization", f"Bearer {TOKEN} ".encode())],
            [(b"authorization", TOKEN.encode())],
            [(b"authorization", b"Bearer wrong"), (b"authorization", f"Bearer {TOKEN}".encode())],
        ],
    )
    async def test_no_or_a_wrong_token_is_litestars_401(
        self, token_pair: Pair, auth: list[tuple[bytes, bytes]]
    ) -> None:
        status, headers, *_ = await same_answer(token_pair, "POST", "/jobs", submission(), [*auth, *JSON])
        assert status == 401 and (b"www-authenticate", 'Bearer realm="geekblog"') in headers
        status, *_ = await same_answer(token_pair, "GET", "/jobs/no-such-job", b"", auth)
        assert status == 401
        assert token_pair.fast.reached_litestar == []  # refused by the bearer-token middleware, before both
        assert await stored(token_pair.fast) == []

    async def test_a_bogus_authorization_is_ignored_without_a_token(self, pair: Pair) -> None:
        auth = [(b"authorization", b"Bearer whatever")]
        status, *_ = await same_answer(pair, "POST", "/jobs", submission(), [*auth, *JSON])
        assert status == 202 and pair.fast.reached_litestar == []


class TestEngineErrors:
    """Errors the engine raises once the request was accepted are rendered, never retried by Litestar."""

    @pytest.mark.parametrize(
        "error",
        [
            StorageError("the database is full"),
            sqlite3.OperationalError("database is locked"),
            sqlite3.OperationalError("database or disk is full"),
            RuntimeError("a bug, with a secret in its message"),
        ],
        ids=["storage-error", "locked", "full", "unexpected"],
    )
    async def test_submit_and_get_errors(
        self, pair: Pair, error: Exception, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
    ) -> None:
        calls: list[str] = []

        async def failing(*args: Any) -> Any:
            calls.append("called")
            raise error

        for side in (pair.fast, pair.plain):
            monkeypatch.setattr(side.engine.jobs, "submit", failing)
            monkeypatch.setattr(side.engine.jobs, "get", failing)
        with caplog.at_level("WARNING"):
            status, headers, body, _ = await same_answer(pair, "POST", "/jobs", submission(), JSON)
            assert calls == ["called", "called"]  # once per app: the fast path did not hand it to Litestar
            assert status in (500, 503) and (b"content-type", "application/problem+json") in headers
            assert "Traceback" not in json.dumps(body) and "secret" not in json.dumps(body)
            status, *_ = await same_answer(pair, "GET", "/jobs/some-job", b"")
            assert status in (500, 503)
        assert pair.fast.reached_litestar == []
        logged = [record.getMessage() for record in caplog.records if record.name == "entrypoints.http.problems"]
        if status == 500:  # logged with its traceback, by each app
            assert logged == ["unexpected error on POST /jobs"] * 2 + ["unexpected error on GET /jobs/some-job"] * 2


class TestSwitch:
    async def test_without_the_fast_path_litestar_answers_everything(self, persistence: str, tmp_path: Path) -> None:
        app = create_app(
            Container(settings=Settings(persistence=persistence, db_path=str(tmp_path / "x.db"))),  # type: ignore[arg-type]
            fast_path=False,
        )
        assert fast_paths(app) == []
        async with AsyncTestClient(app) as client:
            response = await client.post("/jobs", json={"task": "geekblog.add", "args": [1, 2]})
            assert response.status_code == 202

    async def test_the_app_is_still_litestar_for_tests_and_the_schema(self, pair: Pair) -> None:
        assert isinstance(pair.fast.app, Litestar)
        assert pair.fast.app.openapi_schema.to_schema() == pair.plain.app.openapi_schema.to_schema()

    async def test_through_the_test_client(self, persistence: str, tmp_path: Path) -> None:
        container = Container(settings=Settings(persistence=persistence, db_path=str(tmp_path / "x.db")))  # type: ignore[arg-type]
        side = Side(app=create_app(container), engine=container.engine())
        spy_on_litestar(side)
        async with AsyncTestClient(side.app) as client:
            response = await client.post("/jobs/", json={"task": "geekblog.add", "args": [2, 3]})
            assert response.status_code == 202
            job = response.json()
            assert response.headers["location"] == f"/jobs/{job['id']}"
            assert response.headers["content-type"] == "application/json"
            read = await client.get(f"/jobs/{job['id']}")
            assert read.status_code == 200 and read.json()["id"] == job["id"]
            assert side.reached_litestar == []
            assert (await client.get("/jobs")).json()["items"][0]["id"] == job["id"]
            assert side.reached_litestar == ["GET /jobs"]

    def test_an_app_whose_hooks_the_fast_path_would_skip_is_refused(self) -> None:
        @post("/jobs", opt={FAST_PATH: SUBMIT})
        async def submit() -> None:
            return None

        async def add_header(response: Response[Any]) -> Response[Any]:
            response.headers["X-Extra"] = "1"
            return response

        check(Litestar([submit], before_request=require_json_body))  # the app's own hook: fine
        with pytest.raises(RuntimeError, match="after_request"):
            check(Litestar([submit], after_request=add_header))
        with pytest.raises(RuntimeError, match="response_headers"):
            check(Litestar([submit], response_headers={"X-Extra": "1"}))

        async def another_hook(request: Any) -> None:
            return None

        with pytest.raises(RuntimeError, match="before_request"):
            check(Litestar([submit], before_request=another_hook))
