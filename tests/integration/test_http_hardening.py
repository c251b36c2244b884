"""Issue 11 at the HTTP edge: the auth scheme in any case and HEAD wherever GET exists (finding 10).

Each request goes, as raw ASGI messages, to an app with the ``/jobs`` fast path and one without it;
their answers must be the same bytes (see ``test_http_fast_path.py``, whose helpers are used here).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from tests.integration.test_http_fast_path import (
    JSON,
    TOKEN,
    Pair,
    call,
    normalized,
    pair,  # noqa: F401  (fixtures)
    pairs,  # noqa: F401
    persistence,  # noqa: F401
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
        get = await same_answer(pair, "GET", target, b"", [], query=query.encode())
        for side in pair:
            messages = await call(side.app, "HEAD", target, b"", [], query=query.encode())
            assert messages[-1]["body"] == b""
            head = normalized(messages)
            assert head[0] != 405
            if target == "/metrics":  # its counters change between the two requests; the headers' names do not
                assert head[0] == get[0] and [n for n, _ in head[1]] == [n for n, _ in get[1]]
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
