"""A real ``geekblog serve`` process (uvicorn) on a free port, per test, on its own SQLite file."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
GEEKBLOG = Path(sys.executable).with_name("geekblog")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def service_env(db_path: Path, **extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("GEEKBLOG_")}
    env.update(
        {
            "PYTHONPATH": str(ROOT),
            "GEEKBLOG_DB_PATH": str(db_path),
            "GEEKBLOG_TASK_MODULES": "tests.e2e.service_tasks",
            "GEEKBLOG_SHUTDOWN_GRACE": "2",
            "GEEKBLOG_MODE": "development",
        }
    )
    env.update(extra)
    return env


@dataclass
class Service:
    """A running service process; ``restart()`` SIGTERMs it and starts another on the same database."""

    db_path: Path
    log_path: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    port: int = 0
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        return service_env(self.db_path, **self.extra_env)

    def start(self, timeout: float = 20.0) -> None:
        self.port = free_port()
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [str(GEEKBLOG), "serve", "--port", str(self.port)],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        self.wait_ready(timeout)

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        headers = {"Authorization": f"Bearer {self.extra_env['GEEKBLOG_API_TOKEN']}"} if self.token else {}
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"service exited with {self.process.returncode}:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/ready", headers=headers, timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"service not ready after {timeout} s:\n{self.log()}")

    @property
    def token(self) -> str | None:
        return self.extra_env.get("GEEKBLOG_API_TOKEN")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        return self.process.returncode

    def restart(self) -> None:
        self.stop()
        self.start()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def client(self) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=10)


@pytest.fixture
def make_service(tmp_path: Path) -> Iterator[Callable[..., Service]]:
    started: list[Service] = []

    def make(**extra_env: str) -> Service:
        service = Service(db_path=tmp_path / "service.db", log_path=tmp_path / "service.log", extra_env=extra_env)
        service.start()
        started.append(service)
        return service

    yield make
    for service in started:
        if service.process is not None and service.process.poll() is None:
            service.stop(signal.SIGKILL)


@pytest.fixture
def service(make_service: Callable[..., Service]) -> Service:
    return make_service()


def wait_for_state(client: httpx.Client, path: str, states: set[str], timeout: float = 10.0) -> dict[str, object]:
    """Poll ``path`` until its ``state`` is one of ``states`` (bounded by ``timeout``)."""
    deadline = time.monotonic() + timeout
    while True:
        body: dict[str, object] = client.get(path).json()
        if body.get("state") in states:
            return body
        assert time.monotonic() < deadline, f"{path} stayed {body.get('state')}, wanted {states}"
        time.sleep(0.02)
