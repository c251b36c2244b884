"""One version everywhere: the HTTP API and the client report the installed distribution's version."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.metadata import version

import pytest
from litestar.testing import AsyncTestClient

from entrypoints.client.http import ApiClient
from entrypoints.container import Container
from entrypoints.http.app import create_app
from entrypoints.settings import Settings
from entrypoints.version import DISTRIBUTION, VERSION


def installed() -> str:
    return version(DISTRIBUTION)


class RecordingHandler(BaseHTTPRequestHandler):
    """Answers ``{}`` to every GET and records the User-Agent it was sent."""

    user_agents: list[str | None] = []

    def do_GET(self) -> None:
        self.user_agents.append(self.headers.get("User-Agent"))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, format: str, *args: object) -> None:
        return None


@pytest.fixture
def recording_server() -> Iterator[str]:
    RecordingHandler.user_agents = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), RecordingHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


class TestVersion:
    def test_the_version_is_the_installed_distributions(self) -> None:
        assert installed() == VERSION

    async def test_the_http_api_reports_it(self) -> None:
        app = create_app(Container(settings=Settings(persistence="memory")))
        async with AsyncTestClient(app) as client:
            document = (await client.get("/schema/openapi.json")).json()
        assert document["info"]["version"] == installed()

    def test_the_client_sends_it_as_its_user_agent(self, recording_server: str) -> None:
        with ApiClient(recording_server) as client:
            assert client.get("/health").data == {}
        assert RecordingHandler.user_agents == [f"geekblog-cli/{installed()}"]
