"""The dashboard's login cookie and CSRF check at the HTTP edge (Litestar's AsyncTestClient), and its pages
without a token. The browser tests (tests/browser) show the same flow in chromium; these pin each refusal."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from entrypoints.container import Container
from entrypoints.http.app import create_app
from entrypoints.http.dashboard.session import SESSION_COOKIE, SESSION_SECONDS, csrf_token, new_session, valid_session
from entrypoints.settings import Settings

TOKEN = "dashboard-token"
SUBMISSION = {"task": "compat.add", "args": [1, 2]}


def app(api_token: str | None) -> Litestar:
    settings = Settings(persistence="memory", api_token=api_token, task_modules=("tests.integration.compat_tasks",))
    return create_app(Container(settings=settings))


@pytest.fixture
async def client() -> AsyncIterator[AsyncTestClient[Litestar]]:
    async with AsyncTestClient(app(TOKEN)) as test_client:
        yield test_client


async def logged_in(client: AsyncTestClient[Litestar]) -> str:
    """Log in through the form; the CSRF token the jobs page renders for this session."""
    answer = await client.post("/dashboard/login", data={"token": TOKEN}, follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/dashboard"
    cookie = answer.headers["set-cookie"]
    assert "HttpOnly" in cookie
    assert "samesite=strict" in cookie.lower()
    page = await client.get("/dashboard")
    assert page.status_code == 200
    match = re.search(r'<meta name="csrf-token" content="([0-9a-f]{64})">', page.text)
    assert match is not None
    return match.group(1)


class TestSessionCookie:
    def test_a_session_is_valid_for_its_token_and_its_lifetime_only(self) -> None:
        session = new_session(b"t", now=1_000_000)
        assert valid_session(session, b"t", now=1_000_000 + SESSION_SECONDS)
        assert not valid_session(session, b"t", now=1_000_001 + SESSION_SECONDS)
        assert not valid_session(session, b"other", now=1_000_000)
        body, _, mac = session.rpartition(".")
        assert not valid_session(f"9{body}.{mac}", b"t", now=1_000_000)  # another issue time, same signature
        assert not valid_session("no-dot", b"t")
        assert csrf_token(session, b"t") != csrf_token(new_session(b"t"), b"t")


class TestLogin:
    async def test_pages_redirect_to_the_login_form_and_the_api_still_answers_401(
        self, client: AsyncTestClient[Litestar]
    ) -> None:
        for path in ("/dashboard", "/dashboard/jobs/x", "/dashboard/workflows/x"):
            answer = await client.get(path, follow_redirects=False)
            assert (answer.status_code, answer.headers["location"]) == (303, "/dashboard/login")
        assert (await client.get("/jobs")).status_code == 401
        assert (await client.get("/dashboard/login")).status_code == 200
        assert (await client.get("/dashboard/static/dashboard.js")).status_code == 200

    async def test_a_wrong_token_is_refused(self, client: AsyncTestClient[Litestar]) -> None:
        answer = await client.post("/dashboard/login", data={"token": "wrong"}, follow_redirects=False)
        assert answer.status_code == 401
        assert "set-cookie" not in answer.headers
        assert (await client.get("/jobs")).status_code == 401

    async def test_a_cross_site_login_is_refused(self, client: AsyncTestClient[Litestar]) -> None:
        answer = await client.post(
            "/dashboard/login", data={"token": TOKEN}, headers={"Origin": "http://evil.example"}, follow_redirects=False
        )
        assert answer.status_code == 403
        assert "set-cookie" not in answer.headers

    async def test_a_forged_cookie_is_refused(self, client: AsyncTestClient[Litestar]) -> None:
        client.cookies.set(SESSION_COOKIE, new_session(b"not-the-token"))
        assert (await client.get("/jobs")).status_code == 401


class TestCsrf:
    async def test_the_cookie_reads_but_changes_state_only_with_the_csrf_header(
        self, client: AsyncTestClient[Litestar]
    ) -> None:
        csrf = await logged_in(client)
        assert (await client.get("/jobs")).status_code == 200
        refused = await client.post("/jobs", json=SUBMISSION)
        assert refused.status_code == 403
        assert refused.json()["type"] == "urn:geekblog:problem:csrf"
        assert (await client.post("/jobs", json=SUBMISSION, headers={"X-CSRF-Token": "0" * 64})).status_code == 403
        assert (await client.get("/jobs")).json()["items"] == []  # nothing was submitted
        accepted = await client.post("/jobs", json=SUBMISSION, headers={"X-CSRF-Token": csrf})
        assert accepted.status_code == 202

    async def test_a_bearer_token_needs_no_csrf_header(self, client: AsyncTestClient[Litestar]) -> None:
        answer = await client.post("/jobs", json=SUBMISSION, headers={"Authorization": f"Bearer {TOKEN}"})
        assert answer.status_code == 202

    async def test_logging_out_clears_the_cookie(self, client: AsyncTestClient[Litestar]) -> None:
        csrf = await logged_in(client)
        assert (await client.post("/dashboard/logout", follow_redirects=False)).status_code == 403
        answer = await client.post("/dashboard/logout", headers={"X-CSRF-Token": csrf}, follow_redirects=False)
        assert answer.status_code == 303
        assert 'geekblog_session=""' in answer.headers["set-cookie"] or "Max-Age=0" in answer.headers["set-cookie"]


class TestWithoutToken:
    async def test_the_pages_are_open_and_the_login_form_sends_to_the_dashboard(self) -> None:
        async with AsyncTestClient(app(None)) as client:
            page = await client.get("/dashboard")
            assert page.status_code == 200
            assert "default-src 'self'" in page.headers["content-security-policy"]
            assert 'src="/dashboard/static/dashboard.js"' in page.text
            answer = await client.get("/dashboard/login", follow_redirects=False)
            assert (answer.status_code, answer.headers["location"]) == (303, "/dashboard")

    async def test_the_pages_are_not_in_the_openapi_document(self) -> None:
        async with AsyncTestClient(app(None)) as client:
            paths = (await client.get("/schema/openapi.json")).json()["paths"]
            assert not [path for path in paths if path.startswith("/dashboard")]
