"""``deploy/compose.yaml`` is a valid Compose file whose services start the project's image the way it runs.

No Compose tool runs in CI here, so a typo would go unnoticed until someone deploys: this reads the file
with a YAML parser (merge keys resolved, as Compose does), validates it against the Compose
Specification's JSON schema (``tests/support/compose-spec.json``, from compose-spec/compose-spec at
170098ba07d9f53c383a41bfd4c5166b0a4529a6, Apache-2.0), and checks what the schema cannot: the image and
its build, the commands (parsed by the real ``geekblog`` parser), the environment (read by the real
``Settings``), health checks, dependencies, volumes, ports and restart policies.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema_rs
import pytest
import yaml

from entrypoints.cli import build_parser
from entrypoints.settings import PREFIX, Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "deploy" / "compose.yaml"
SCHEMA = ROOT / "tests" / "support" / "compose-spec.json"

ENGINES = ("service-1", "service-2", "worker")
"""The services that run the project's image (every one but PostgreSQL)."""
HTTP_SERVICES = ("service-1", "service-2")

INTERPOLATION = re.compile(r"\$\{(?P<name>\w+)(?::(?P<kind>[?-])(?P<text>[^}]*))?\}")


def interpolated(value: str, env: dict[str, str]) -> str:
    """``value`` with Compose's ``${VAR}``, ``${VAR:-default}`` and ``${VAR:?error}`` replaced from ``env``."""

    def one(match: re.Match[str]) -> str:
        name, kind, text = match["name"], match["kind"], match["text"]
        if env.get(name):
            return env[name]
        if kind == "?":
            raise LookupError(f"{name}: {text}")
        return text or ""

    return INTERPOLATION.sub(one, value)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    return loaded


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = compose["services"]
    return found


def containerfile_env() -> dict[str, str]:
    """The ``ENV`` pairs of the Containerfile's final stage (one ``ENV`` instruction, continued lines)."""
    text = (ROOT / "Containerfile").read_text(encoding="utf-8").replace("\\\n", " ")
    final_stage = text.rsplit("\nFROM ", 1)[1]
    env_line = next(line for line in final_stage.splitlines() if line.startswith("ENV "))
    return dict(pair.split("=", 1) for pair in env_line.split()[1:])


@contextlib.contextmanager
def ready_stand_in(status: int, *, token: str) -> Iterator[tuple[int, list[str]]]:
    """An HTTP server on a free port of 127.0.0.1 answering every GET with ``status`` when it carries
    ``Bearer token`` (else 401); yields its port and the paths it was asked for."""
    paths: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            paths.append(self.path)
            authorized = self.headers.get("Authorization") == f"Bearer {token}"
            self.send_response(status if authorized else 401)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], paths
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


class TestComposeFile:
    def test_is_valid_against_the_compose_specification(self, compose: dict[str, Any]) -> None:
        validator = jsonschema_rs.Draft7Validator(json.loads(SCHEMA.read_text(encoding="utf-8")))
        errors = [
            f"{'/'.join(map(str, error.instance_path))}: {error.message}" for error in validator.iter_errors(compose)
        ]
        assert errors == []

    def test_the_schema_catches_a_misspelt_key(self, compose: dict[str, Any]) -> None:
        validator = jsonschema_rs.Draft7Validator(json.loads(SCHEMA.read_text(encoding="utf-8")))
        broken = json.loads(json.dumps(compose))
        broken["services"]["worker"]["depend_on"] = broken["services"]["worker"].pop("depends_on")
        assert not validator.is_valid(broken)

    def test_has_postgres_two_service_replicas_and_a_worker(self, services: dict[str, dict[str, Any]]) -> None:
        assert set(services) == {"postgres", *ENGINES}

    def test_every_engine_runs_the_image_built_from_the_containerfile(
        self, services: dict[str, dict[str, Any]]
    ) -> None:
        images = {services[name]["image"] for name in ENGINES}
        assert len(images) == 1
        for name in ENGINES:
            build = services[name]["build"]
            context = (COMPOSE.parent / build["context"]).resolve()
            assert context == ROOT
            assert (context / build["dockerfile"]).is_file()

    def test_service_replicas_serve_and_the_worker_works(self, services: dict[str, dict[str, Any]]) -> None:
        for name in HTTP_SERVICES:
            assert services[name]["command"] == ["geekblog", "serve"]
        assert services["worker"]["command"] == ["geekblog", "worker", "--concurrency", "20"]

    def test_every_command_is_one_the_geekblog_parser_accepts(self, services: dict[str, dict[str, Any]]) -> None:
        parser = build_parser()
        for name in ENGINES:
            program, subcommand, *_ = services[name]["command"]
            assert program == "geekblog"
            parsed = parser.parse_args(services[name]["command"][1:])
            assert parsed.command == subcommand
        assert parser.parse_args(services["worker"]["command"][1:]).concurrency == 20

    def test_every_engine_reads_its_settings_and_uses_the_postgres_service(
        self, services: dict[str, dict[str, Any]]
    ) -> None:
        database = services["postgres"]["environment"]
        host_env = {"POSTGRES_PASSWORD": "s3cret", "GEEKBLOG_API_TOKEN": "t0ken"}
        known = {PREFIX + field.upper() for field in Settings.__struct_fields__}
        for name in ENGINES:
            environment = {
                key: interpolated(str(value), host_env) for key, value in services[name]["environment"].items()
            }
            assert set(environment) - known == set(), f"{name}: variables no setting reads"
            settings = Settings.from_env(environment)
            assert settings.replica == environment["GEEKBLOG_REPLICA"]
            assert settings.persistence == "postgres"
            assert settings.api_token == "t0ken"
            assert settings.database_url is not None
            url = urlsplit(settings.database_url)
            assert (url.hostname, url.port) == ("postgres", 5432)
            assert url.username == database["POSTGRES_USER"]
            assert url.password == interpolated(database["POSTGRES_PASSWORD"], host_env) == "s3cret"
            assert url.path == "/" + database["POSTGRES_DB"]

    @pytest.mark.parametrize("variable", ["POSTGRES_PASSWORD", "GEEKBLOG_API_TOKEN"])
    def test_the_database_password_and_the_api_token_must_be_given(
        self, services: dict[str, dict[str, Any]], variable: str
    ) -> None:
        given = {"POSTGRES_PASSWORD": "s3cret", "GEEKBLOG_API_TOKEN": "t0ken"}
        del given[variable]
        for name in ENGINES:
            line = " ".join(str(value) for value in services[name]["environment"].values())
            with pytest.raises(LookupError, match=variable):
                interpolated(line, given)

    def test_each_engine_names_its_own_replica(self, services: dict[str, dict[str, Any]]) -> None:
        names = [services[name]["environment"]["GEEKBLOG_REPLICA"] for name in ENGINES]
        assert len(set(names)) == len(ENGINES)

    def test_engines_start_once_postgres_is_healthy(self, services: dict[str, dict[str, Any]]) -> None:
        for name in ENGINES:
            assert services[name]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
        assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])

    def test_postgres_keeps_its_data_on_a_named_volume(
        self, compose: dict[str, Any], services: dict[str, dict[str, Any]]
    ) -> None:
        volume, _, target = services["postgres"]["volumes"][0].partition(":")
        assert volume in compose["volumes"]
        assert target == "/var/lib/postgresql/data"

    def test_every_service_restarts_and_engines_get_sigterm_with_time_to_finish(
        self, services: dict[str, dict[str, Any]]
    ) -> None:
        for name, service in services.items():
            assert service["restart"] == "unless-stopped", name
        for name in ENGINES:
            service = services[name]
            assert service["init"] is True
            grace = float(service["environment"]["GEEKBLOG_SHUTDOWN_GRACE"])
            assert grace < float(service["stop_grace_period"].removesuffix("s"))

    def test_service_replicas_publish_distinct_ports_to_the_image_port(
        self, services: dict[str, dict[str, Any]]
    ) -> None:
        image_port = containerfile_env()["GEEKBLOG_PORT"]
        published = []
        for name in HTTP_SERVICES:
            (mapping,) = services[name]["ports"]
            address, host_port, container_port = mapping.split(":")
            assert address == "127.0.0.1"
            assert container_port == image_port
            published.append(host_port)
        assert len(set(published)) == len(published)
        assert "ports" not in services["worker"]

    @pytest.mark.parametrize(
        ("status", "token_sent", "healthy"),
        [(200, "s3cret", True), (503, "s3cret", False), (200, None, False)],
        ids=["ready", "not-ready", "no-token"],
    )
    def test_service_replicas_are_healthy_only_when_ready(
        self, services: dict[str, dict[str, Any]], status: int, token_sent: str | None, healthy: bool
    ) -> None:
        """The check runs as Compose runs it (``/bin/sh -c``) against a stand-in for ``/ready`` that wants
        the token: healthy only on a 200 to a request that carries it."""
        kind, command = services["service-1"]["healthcheck"]["test"]
        assert kind == "CMD-SHELL"
        assert services["service-2"]["healthcheck"] == services["service-1"]["healthcheck"]
        with ready_stand_in(status, token="s3cret") as (port, paths):
            env = {
                "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
                "GEEKBLOG_PORT": str(port),
                **({"GEEKBLOG_API_TOKEN": token_sent} if token_sent else {}),
            }
            done = subprocess.run(["/bin/sh", "-c", command], env=env, capture_output=True, timeout=30)
        assert (done.returncode == 0) is healthy, done.stderr.decode()
        assert paths == ["/ready"]

    def test_the_health_check_defaults_to_the_image_port(self, services: dict[str, dict[str, Any]]) -> None:
        _, command = services["service-1"]["healthcheck"]["test"]
        assert f"os.environ.get('GEEKBLOG_PORT', '{containerfile_env()['GEEKBLOG_PORT']}')" in command

    def test_the_worker_has_no_http_health_check(self, services: dict[str, dict[str, Any]]) -> None:
        # The image's HEALTHCHECK calls /health, which a worker (no HTTP) never answers.
        assert services["worker"]["healthcheck"] == {"disable": True}
