"""Issue 11 at the HTTP edge: the auth scheme in any case and HEAD wherever GET exists (finding 10).

Each request goes, as raw ASGI messages, to an app with the ``/jobs`` fast path and one without it;
their answers must be the same bytes (see ``test_http_fast_path.py``, whose helpers are used here).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from entrypoints.container import Container
from entrypoints.http.app import create_app
from entrypoints.http.hosts import HostGuard, allowed_hosts, guard_hosts
from entrypoints.settings import Settings, SettingsError
from tests.integration.test_http_fast_path import (
    JSON,
    TOKEN,
    Messages,
    Pair,
    call,
    normalized,
    pair,  # noqa: F401  (fixtures)
    pairs,  # noqa: F401
    persistence,  # noqa: F401
    running,
    same_answer,
    stored,
    submission,
)


class TestAuthScheme:
    @pytest.fixture
    async def token_pair(self, pairs: Callable[..., Awaitable[Pair]]) -> Pair:  # noqa: F811
        return await pairs(api_token=TOKEN)

    @pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER", "bEaReR"])
    async def test_the_scheme_in_any_case_is_accepted(self, token_pair: Pair, scheme: str) -> None:
        auth = [(b"authorization", f"{scheme} {TOKEN}".encode())]
        status, *_ = await same_answer(token_pair, "POST", "/jobs", submission(), [*auth, *JSON])
        assert status == 202
        status, *_ = await same_answer(token_pair, "GET", "/jobs/no-such-job", b"", auth)
        assert status == 404
        assert token_pair.fast.reached_litestar == []  # the fast path answered both itself
        status, *_ = await same_answer(token_pair, "GET", "/tasks", b"", auth)
        assert status == 200

    @pytest.mark.parametrize(
        "value",
        [
            f"Bearer  {TOKEN}",
            f"Bearer {TOKEN} ",
            f"Bearer\t{TOKEN}",
            f"Basic {TOKEN}",
            f"Bearer{TOKEN}",
            f"bearer {TOKEN}x",
        ],
    )
    async def test_anything_else_is_still_401(self, token_pair: Pair, value: str) -> None:
        auth = [(b"authorization", value.encode())]
        status, *_ = await same_answer(token_pair, "POST", "/jobs", submission(), [*auth, *JSON])
        assert status == 401
        status, *_ = await same_answer(token_pair, "GET", "/tasks", b"", auth)
        assert status == 401
        assert await stored(token_pair.fast) == []


def without_body(answer: tuple[Any, ...]) -> tuple[Any, ...]:
    status, headers, _body, more = answer
    return status, headers, more


class TestHead:
    @pytest.mark.parametrize(
        "path",
        [
            "/health",
            "/ready",
            "/tasks",
            "/jobs",
            "/jobs?limit=1",
            "/jobs/no-such-job",
            "/metrics",
            "/schema/openapi.json",
        ],
    )
    async def test_head_is_get_without_the_body(self, pair: Pair, path: str) -> None:  # noqa: F811
        target, _, query = path.partition("?")
        # /metrics: its counters, durations and process metrics change between any two requests (the two apps'
        # included); its status and headers' names do not
        scraped = target == "/metrics"
        get = () if scraped else await same_answer(pair, "GET", target, b"", [], query=query.encode())
        for side in pair:
            messages = await call(side.app, "HEAD", target, b"", [], query=query.encode())
            assert messages[-1]["body"] == b""
            head = normalized(messages)
            assert head[0] != 405
            if scraped:
                get = normalized(await call(side.app, "GET", target, b"", [], query=query.encode()))
                assert head[0] == get[0] == 200 and [n for n, _ in head[1]] == [n for n, _ in get[1]]
            else:
                assert without_body(head) == without_body(get)

    async def test_head_of_a_job_is_answered_by_the_fast_path_as_litestar_does(self, pair: Pair) -> None:  # noqa: F811
        ids = []
        for side in pair:
            created = await call(side.app, "POST", "/jobs", submission(options={"countdown": 60}), JSON)
            ids.append(json.loads(created[1]["body"])["id"])
        answers = []
        for side, job_id in zip(pair, ids, strict=True):
            messages = await call(side.app, "HEAD", f"/jobs/{job_id}")
            get = await call(side.app, "GET", f"/jobs/{job_id}")
            assert messages[0] == get[0]  # status and headers, content-length included
            assert messages[1]["body"] == b"" and int(dict(get[0]["headers"])[b"content-length"]) > 0
            answers.append(normalized(messages))
        assert answers[0] == answers[1]
        assert pair.fast.reached_litestar == []

    async def test_head_of_an_event_stream_ends_at_once(self, pair: Pair) -> None:  # noqa: F811
        for side in pair:
            created = await call(side.app, "POST", "/jobs", submission(options={"countdown": 60}), JSON)
            job_id = json.loads(created[1]["body"])["id"]
            messages = await call(side.app, "HEAD", f"/jobs/{job_id}/events")  # would wait 60 s as a GET
            assert messages[0]["status"] == 200
            assert all(m.get("body", b"") == b"" for m in messages[1:])

    async def test_head_where_there_is_no_get_is_405_as_for_get(self, pair: Pair) -> None:  # noqa: F811
        get = await same_answer(pair, "GET", "/jobs/x/cancel")
        head = normalized(await call(pair.plain.app, "HEAD", "/jobs/x/cancel"))
        assert get[0] == head[0] == 405


# ------------------------------------------------------------------------------------------------
# finding 5: canvas nodes are validated as POST /jobs validates a job
# ------------------------------------------------------------------------------------------------

OPTION_VALUES: list[tuple[str, Any]] = [
    *(("priority", v) for v in (10**30, -(10**30), 2**63, -(2**63) - 1, 2**63 - 1, 1000, 1001, -1000, -1001, 7)),
    *(("priority", v) for v in ("5", 5.0, 5.5, True, None, "high")),
    *(("max_retries", v) for v in (10**30, 2**63, -1, 0, 1000, 1001, 3)),
    *(("countdown", v) for v in (-1, 0, 0.5, 1e9, 10**30, 316_224_000)),
    *(("time_limit", v) for v in (0, -1, 0.5, 10**30)),
    *(("queue", v) for v in ("", "a b", "x" * 201, "q", 5)),
    *(("routing_key", v) for v in ("rk", "\t")),
]


def workflow(canvas: dict[str, Any]) -> bytes:
    return json.dumps({"canvas": canvas}).encode()


async def post(app: Any, path: str, body: bytes) -> tuple[int, Any]:
    messages = await call(app, "POST", path, body, JSON)
    return messages[0]["status"], json.loads(messages[1]["body"])


class TestCanvasValidation:
    @pytest.mark.parametrize(("name", "value"), OPTION_VALUES, ids=lambda v: repr(v)[:20])
    async def test_canvas_options_are_checked_as_job_options(self, pair: Pair, name: str, value: Any) -> None:  # noqa: F811
        app = pair.plain.app
        job_status, _ = await post(app, "/jobs", submission(options={name: value}))
        node = {"task": "compat.add", "args": [1, 2], "options": {name: value}}
        for canvas in (
            node,
            {"chain": [{"task": "compat.add", "args": [1, 2]}, {**node, "args": [3]}]},
            {"group": [node, node]},
            {"chord": {"header": [{"task": "compat.add", "args": [1, 2]}], "body": {**node, "args": []}}},
        ):
            status, body = await post(app, "/workflows", workflow(canvas))
            assert status < 500, body
            assert (status == 202) == (job_status == 202), (job_status, status, body)
            if status != 202:
                assert status in (400, 422) and body["status"] == status and name in body["detail"]

    async def test_a_refused_canvas_stores_nothing(self, pair: Pair) -> None:  # noqa: F811
        canvas = {
            "chain": [{"task": "compat.add", "args": [1, 2]}, {"task": "compat.add", "options": {"priority": 10**30}}]
        }
        status, _ = await post(pair.plain.app, "/workflows", workflow(canvas))
        assert status == 422
        assert await stored(pair.plain) == []

    @pytest.mark.parametrize(
        "canvas",
        [
            {"task": "compat.add", "args": [1]},
            {"chain": [{"task": "compat.add", "args": [1, 2, 3]}, {"task": "compat.add", "args": [1]}]},
            {
                "chain": [
                    {"group": [{"task": "compat.add", "args": [1, 2]}, {"task": "compat.add"}]},
                    {"task": "compat.total"},
                ]
            },
            {"group": [{"task": "compat.add", "args": [1, 2]}, {"task": "compat.add", "kwargs": {"z": 1}}]},
            {"chord": {"header": [{"task": "compat.add", "args": [1]}], "body": {"task": "compat.total"}}},
            {"chain": [{"task": "compat.add", "args": [1, 2]}, {"task": "compat.add", "args": [1], "immutable": True}]},
        ],
        ids=["lone", "chain-first", "group-in-chain-first", "group-member", "chord-header", "immutable-later"],
    )
    async def test_known_arguments_are_checked_before_anything_is_stored(
        self,
        pair: Pair,  # noqa: F811
        canvas: dict[str, Any],
    ) -> None:
        status, body = await post(pair.plain.app, "/workflows", workflow(canvas))
        assert status == 422, body
        assert body["type"] == "urn:geekblog:problem:invalid-arguments", body
        assert await stored(pair.plain) == []

    async def test_a_later_step_gets_its_predecessors_result_so_is_not_checked_alone(self, pair: Pair) -> None:  # noqa: F811
        canvas = {"chain": [{"task": "compat.add", "args": [1, 2]}, {"task": "compat.add", "args": [10]}]}
        status, body = await post(pair.plain.app, "/workflows", workflow(canvas))
        assert status == 202, body

    @pytest.mark.parametrize("number", [2**63, -(2**63) - 1, 10**30])
    async def test_integers_past_64_bits_are_refused_at_the_edge(self, pair: Pair, number: int) -> None:  # noqa: F811
        canvas = {"chain": [{"task": "compat.echo", "args": [1]}, {"task": "compat.echo", "kwargs": {"n": [number]}}]}
        status, body = await post(pair.plain.app, "/workflows", workflow(canvas))
        assert status == 422, body
        answers = await same_answer(pair, "POST", "/jobs", submission(task="compat.echo", args=[number]), JSON)
        assert answers[0] == 422
        for side in pair:
            assert await stored(side) == []

    async def test_integers_past_the_digit_limit_are_a_4xx(self, pair: Pair) -> None:  # noqa: F811
        big = b"9" * 1500  # within the body limit here (2 KiB): decoded, then refused as past 64 bits
        status, _ = await post(
            pair.plain.app, "/workflows", b'{"canvas": {"task": "compat.echo", "args": [' + big + b"]}}"
        )
        assert status == 422
        answer = await same_answer(pair, "POST", "/jobs", b'{"task": "compat.echo", "args": [' + big + b"]}", JSON)
        assert answer[0] == 422
        settings = Settings(persistence="memory", task_modules=("tests.integration.compat_tasks",), shutdown_grace=0.5)
        app = create_app(Container(settings=settings))
        huge = b"9" * 5000  # past Python's int-string digit limit (4300): msgspec refuses it while decoding
        async with running(app):
            status, _ = await post(app, "/workflows", b'{"canvas": {"task": "compat.echo", "args": [' + huge + b"]}}")
            assert status == 400
            status, _ = await post(app, "/jobs", b'{"task": "compat.echo", "args": [' + huge + b"]}")
            assert status == 400


# ------------------------------------------------------------------------------------------------
# finding 6: allowed hosts (DNS rebinding)
# ------------------------------------------------------------------------------------------------


async def call_with_hosts(app: Any, path: str, hosts: list[bytes], method: str = "GET") -> Messages:
    """What ``app`` sends for a bodiless request with exactly these ``Host`` headers."""
    sent: Messages = []
    incoming = [{"type": "http.request", "body": b"", "more_body": False}]

    async def receive() -> dict[str, Any]:
        return incoming.pop(0) if incoming else {"type": "http.disconnect"}

    async def send(message: Any) -> None:
        sent.append(dict(message))

    scope = {
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
        "query_string": b"",
        "headers": [(b"host", host) for host in hosts],
        "state": {},
    }
    await asyncio.wait_for(app(scope, receive, send), 10)
    return sent


LOOPBACK = [b"localhost", b"localhost:8000", b"LOCALHOST:1", b"127.0.0.1", b"127.0.0.1:65535", b"[::1]", b"[::1]:8000"]
FOREIGN = [
    [b"evil.example"],
    [b"evil.example:8000"],
    [b"localhost.evil.example"],
    [b"127.0.0.1.nip.io:8000"],
    [b"localhost:80x"],
    [b"[::1]x"],
    [b"::1"],
    [b"0.0.0.0:8000"],
    [b"127.0.0.2"],
    [b""],
    [b"\xff"],
    [],  # no Host
    [b"localhost", b"evil.example"],  # two
]


class TestAllowedHosts:
    @pytest.mark.parametrize("host", LOOPBACK)
    async def test_loopback_names_are_answered_without_a_token(self, pair: Pair, host: bytes) -> None:  # noqa: F811
        for side in pair:
            guarded = guard_hosts(side.app, Settings())
            assert isinstance(guarded, HostGuard)
            assert (await call_with_hosts(guarded, "/jobs/no-such-job", [host]))[0]["status"] == 404

    @pytest.mark.parametrize("hosts", FOREIGN, ids=repr)
    async def test_other_hosts_get_400_on_the_fast_path_and_litestar_alike(
        self,
        pair: Pair,  # noqa: F811
        hosts: list[bytes],
    ) -> None:
        answers = []
        for side in pair:
            guarded = guard_hosts(side.app, Settings())
            for method, path in (("GET", "/jobs/no-such-job"), ("GET", "/tasks"), ("POST", "/jobs"), ("HEAD", "/jobs")):
                answers.append(await call_with_hosts(guarded, path, hosts, method))
        assert all(answer == answers[0] for answer in answers)
        status, headers, body, _ = normalized(answers[0])
        assert status == 400 and dict(headers)[b"content-type"] == "application/problem+json"
        assert body["type"] == "urn:geekblog:problem:host-not-allowed" and "GEEKBLOG_ALLOWED_HOSTS" in body["detail"]
        assert pair.fast.reached_litestar == []
        for side in pair:
            assert await stored(side) == []

    async def test_health_is_answered_for_any_host(self, pair: Pair) -> None:  # noqa: F811
        guarded = guard_hosts(pair.plain.app, Settings())
        assert (await call_with_hosts(guarded, "/health", [b"evil.example"]))[0]["status"] == 200

    def test_which_hosts_are_allowed(self) -> None:
        assert allowed_hosts(Settings()) == {"localhost", "127.0.0.1", "[::1]"}
        assert allowed_hosts(Settings(api_token="t")) is None  # a rebinding page cannot send the token
        assert allowed_hosts(Settings(allowed_hosts=("tasks.example", "*"))) is None
        env = {"GEEKBLOG_ALLOWED_HOSTS": "Tasks.Example, 10.0.0.5,[fe80::1]", "GEEKBLOG_API_TOKEN": "t"}
        assert allowed_hosts(Settings.from_env(env)) == {"tasks.example", "10.0.0.5", "[fe80::1]"}
        for bad in (",", "a b", "host:8000", "http://x", "x/y"):
            with pytest.raises(SettingsError, match="GEEKBLOG_ALLOWED_HOSTS"):
                Settings.from_env({"GEEKBLOG_ALLOWED_HOSTS": bad})

    async def test_allowed_hosts_widen_the_list(self, pair: Pair) -> None:  # noqa: F811
        guarded = guard_hosts(pair.plain.app, Settings(allowed_hosts=("tasks.example",)))
        assert (await call_with_hosts(guarded, "/tasks", [b"tasks.example:8000"]))[0]["status"] == 200
        assert (await call_with_hosts(guarded, "/tasks", [b"localhost"]))[0]["status"] == 400
        anyhost = guard_hosts(pair.plain.app, Settings(allowed_hosts=("*",)))
        assert (await call_with_hosts(anyhost, "/tasks", [b"evil.example"]))[0]["status"] == 200
