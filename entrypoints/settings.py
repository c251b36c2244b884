"""Settings: one msgspec object read from ``GEEKBLOG_*`` environment variables and validated at start."""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

import msgspec

from domain.queues import parse_queues

PREFIX = "GEEKBLOG_"
POSTGRES_SCHEMES = ("postgresql://", "postgres://")
REPLICA_MAX_LENGTH = 128
"""A replica name goes into a response header, a Prometheus label and log lines: kept short and plain."""


def default_replica() -> str:
    """``<hostname>-<pid>``: unique among the processes of one host, and readable in a dashboard."""
    host = "".join(c if _is_replica_character(c) else "_" for c in socket.gethostname()) or "host"
    suffix = f"-{os.getpid()}"
    return host[: REPLICA_MAX_LENGTH - len(suffix)] + suffix


def replica_problem(name: str) -> str | None:
    """Why ``name`` cannot name a replica (``None`` when it can)."""
    if not 1 <= len(name) <= REPLICA_MAX_LENGTH:
        return f"must be 1 to {REPLICA_MAX_LENGTH} characters long, got {len(name)}"
    if not all(_is_replica_character(c) for c in name):
        return f"must be printable ASCII without spaces, got {name!r}"
    return None


def _is_replica_character(c: str) -> bool:
    return "!" <= c <= "~"  # printable ASCII, space excluded


_SECONDS = (
    "keepalive_timeout",
    "header_timeout",
    "body_timeout",
    "pg_connect_timeout",
    "pg_command_timeout",
    "cancel_timeout",
)
"""Settings in seconds that must be positive (at most a day)."""


class SettingsError(ValueError):
    """An environment variable has a value the service cannot use; the message names it."""


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    """Everything the process is configured with. Field ``x`` comes from ``GEEKBLOG_X``."""

    db_path: str = "./var/geekblog.db"
    database_url: str | None = None
    """``postgresql://`` (or ``postgres://``) URL: PostgreSQL instead of the SQLite file at ``db_path``."""
    persistence: Literal["sqlite", "memory", "postgres"] = "sqlite"
    """Where jobs live; ``postgres`` whenever ``database_url`` is set (SQLite stays the default)."""
    max_concurrent_tasks: int = 10
    queues: str | None = None
    """The named queues this process's engine serves, ``name[:concurrency],...`` (``default:8,ai:2``): it claims
    jobs of these queues only, at most ``concurrency`` of a queue at once (a name alone: up to
    ``max_concurrent_tasks``), and never more than ``max_concurrent_tasks`` in all. Unset: every queue."""
    mode: Literal["production", "development"] = "production"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] | None = None
    """The root logger's level (any case); unset: INFO in production, DEBUG in development."""
    task_modules: tuple[str, ...] = ()
    api_token: str | None = None
    allowed_hosts: tuple[str, ...] | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    shutdown_grace: float = 10.0
    max_body_bytes: int = 1_048_576
    max_connections: int = 1000
    keepalive_timeout: float = 5.0
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    max_header_bytes: int = 16_384
    lease_seconds: float = 60.0
    """How long a running job's claim lasts unless renewed (every third of it): a dead engine's jobs are
    recovered once it expires."""
    poll_seconds: float = 5.0
    """Engines sharing PostgreSQL: how often each looks for due work and expired leases without being told
    (the safety net under LISTEN/NOTIFY)."""
    pg_pool_size: int = 10
    """PostgreSQL: the most connections of this process's pool (its writer and its reads); it also holds a
    listening connection and up to 4 for blocking reads from threads."""
    pg_connect_timeout: float = 10.0
    """PostgreSQL: how long opening a connection may take, in seconds."""
    pg_command_timeout: float = 30.0
    """PostgreSQL: how long one statement (or a batch's transaction step) may take before it is cancelled."""
    cancel_timeout: float = 5.0
    """Engines sharing PostgreSQL: how long a cancel waits for the engine running the job to answer before it
    stores the revocation itself (that engine is then taken for gone)."""
    busy_timeout_ms: int = 5000
    max_db_mb: int | None = None
    synchronous: Literal["NORMAL", "FULL"] = "NORMAL"
    result_ttl: float = 7 * 24 * 3600.0
    max_result_bytes: int = 1_048_576
    max_step_args_bytes: int = 2_097_152
    max_workflow_bytes: int = 67_108_864
    llm_base_url: str | None = None
    llm_model: str = "llama3.2"
    llm_api_key: str | None = None
    llm_timeout: float = 60.0
    llm_max_retries: int = 3
    offline_delay: float = 0.0
    run_jobs: bool = True
    """False: this process submits jobs, follows them and answers for them, and runs none (a web process
    beside ``geekblog worker`` processes, as Celery's producers beside its workers); PostgreSQL only."""
    replica: str = msgspec.field(default_factory=default_replica)
    """This process's name in ``/ready``, ``/metrics`` and the start-up line, to tell replicas apart."""

    def __post_init__(self) -> None:
        if self.max_concurrent_tasks < 1:
            raise SettingsError(f"{PREFIX}MAX_CONCURRENT_TASKS must be at least 1, got {self.max_concurrent_tasks}")
        if self.queues is not None:
            try:
                parse_queues(self.queues)
            except (TypeError, ValueError) as exc:
                raise SettingsError(f"{PREFIX}QUEUES: {exc}") from None
        if not 0 <= self.port <= 65535:
            raise SettingsError(f"{PREFIX}PORT must be a TCP port (0-65535), got {self.port}")
        if self.shutdown_grace < 0:
            raise SettingsError(f"{PREFIX}SHUTDOWN_GRACE must not be negative, got {self.shutdown_grace}")
        if self.max_body_bytes < 1024:
            raise SettingsError(f"{PREFIX}MAX_BODY_BYTES must be at least 1024, got {self.max_body_bytes}")
        if self.max_connections < 2:
            raise SettingsError(f"{PREFIX}MAX_CONNECTIONS must be at least 2, got {self.max_connections}")
        for name in _SECONDS:
            if not 0 < getattr(self, name) <= 86_400:
                raise SettingsError(f"{PREFIX}{name.upper()} must be positive (seconds, at most 86400)")
        if not 1024 <= self.max_header_bytes <= 1_048_576:
            raise SettingsError(f"{PREFIX}MAX_HEADER_BYTES must be 1024 to 1048576, got {self.max_header_bytes}")
        if self.lease_seconds <= 0:
            raise SettingsError(f"{PREFIX}LEASE_SECONDS must be positive, got {self.lease_seconds}")
        if not 0 < self.poll_seconds <= 86_400:
            raise SettingsError(
                f"{PREFIX}POLL_SECONDS must be positive (seconds, at most 86400), got {self.poll_seconds}"
            )
        if not 2 <= self.pg_pool_size <= 1000:
            raise SettingsError(f"{PREFIX}PG_POOL_SIZE must be 2 to 1000, got {self.pg_pool_size}")
        if self.llm_base_url is not None and not self.llm_base_url.startswith(("http://", "https://")):
            raise SettingsError(f"{PREFIX}LLM_BASE_URL must be an http(s) URL, got {self.llm_base_url!r}")
        if self.llm_timeout <= 0 or self.llm_max_retries < 0 or self.offline_delay < 0:
            raise SettingsError(
                f"{PREFIX}LLM_TIMEOUT must be positive, {PREFIX}LLM_MAX_RETRIES and {PREFIX}OFFLINE_DELAY not negative"
            )
        if self.busy_timeout_ms < 0 or (self.max_db_mb is not None and self.max_db_mb < 1) or self.result_ttl < 0:
            raise SettingsError(
                f"{PREFIX}BUSY_TIMEOUT_MS and {PREFIX}RESULT_TTL must not be negative, {PREFIX}MAX_DB_MB at least 1"
            )
        for name in ("max_result_bytes", "max_step_args_bytes", "max_workflow_bytes"):
            if getattr(self, name) < 1024:
                raise SettingsError(f"{PREFIX}{name.upper()} must be at least 1024, got {getattr(self, name)}")
        if self.allowed_hosts is not None and (
            not self.allowed_hosts or any(not _is_host_name(name) for name in self.allowed_hosts)
        ):
            raise SettingsError(
                f"{PREFIX}ALLOWED_HOSTS must be comma-separated host names (or *), got {self.allowed_hosts}"
            )
        if self.database_url is not None:
            if not self.database_url.startswith(POSTGRES_SCHEMES):
                scheme = self.database_url.partition("://")[0] if "://" in self.database_url else "no scheme"
                raise SettingsError(
                    f"{PREFIX}DATABASE_URL must be a postgresql:// (or postgres://) URL, got one with {scheme!r}"
                )
            problem = _url_problem(self.database_url)
            if problem is not None:
                raise SettingsError(f"{PREFIX}DATABASE_URL cannot be read: {problem}")
            if self.persistence == "sqlite":  # the default: the URL chooses PostgreSQL
                msgspec.structs.force_setattr(self, "persistence", "postgres")
            elif self.persistence == "memory":
                raise SettingsError(f"{PREFIX}DATABASE_URL and {PREFIX}PERSISTENCE=memory: set only one of them")
        elif self.persistence == "postgres":
            raise SettingsError(f"{PREFIX}PERSISTENCE=postgres needs {PREFIX}DATABASE_URL (postgresql://...)")
        if not self.run_jobs and self.persistence != "postgres":
            raise SettingsError(
                f"{PREFIX}RUN_JOBS=false needs {PREFIX}DATABASE_URL (PostgreSQL): with SQLite or in memory no"
                " other process could run the jobs"
            )
        problem = replica_problem(self.replica)
        if problem is not None:
            raise SettingsError(f"{PREFIX}REPLICA {problem}")
        if self.persistence == "sqlite" and not self.db_path:
            raise SettingsError(f"{PREFIX}DB_PATH must not be empty with {PREFIX}PERSISTENCE=sqlite")

    @property
    def queue_limits(self) -> dict[str, int | None] | None:
        """``queues`` parsed: each served queue's own concurrency (None: no limit of its own); None: every queue."""
        return None if self.queues is None else parse_queues(self.queues)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read and validate; raises :class:`SettingsError` naming the first bad variable."""
        environ = os.environ if environ is None else environ
        if environ.get(f"{PREFIX}DATABASE_URL") and environ.get(f"{PREFIX}PERSISTENCE", "") not in ("", "postgres"):
            raise SettingsError(
                f"{PREFIX}DATABASE_URL selects PostgreSQL, {PREFIX}PERSISTENCE={environ[f'{PREFIX}PERSISTENCE']}"
                " another storage: set only one of them"
            )
        raw: dict[str, object] = {}
        for field in msgspec.structs.fields(cls):
            value = environ.get(PREFIX + field.name.upper())
            if value is None or value == "":
                continue
            if field.name in ("task_modules", "allowed_hosts"):
                raw[field.name] = [part.strip() for part in value.split(",") if part.strip()]
            elif field.name == "log_level":
                raw[field.name] = value.strip().upper()
            else:
                raw[field.name] = value
        try:
            return msgspec.convert(raw, cls, strict=False)
        except msgspec.ValidationError as exc:
            raise SettingsError(_name_the_variable(str(exc))) from None


def redacted_url(url: str) -> str:
    """A database URL without its password and query, to name the database in messages."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return f"{url.partition('://')[0]}://(unreadable URL)"
    if ":" in host:
        host = f"[{host}]"
    user = f"{parts.username}@" if parts.username else ""
    return urlunsplit((parts.scheme, f"{user}{host}{'' if port is None else f':{port}'}", parts.path, "", ""))


def _url_problem(url: str) -> str | None:
    try:
        urlsplit(url).port  # noqa: B018  (reading the port is what checks it)
    except ValueError as exc:
        return str(exc)
    return None


def _is_host_name(name: str) -> bool:
    """A host name or address as ``GEEKBLOG_ALLOWED_HOSTS`` takes it: no port, no path, no spaces; or ``*``."""
    if not name or "/" in name or any(c.isspace() for c in name):
        return False
    return (name.startswith("[") and name.endswith("]")) or ":" not in name


def _name_the_variable(message: str) -> str:
    # msgspec says "Expected `int`, got `str` - at `$.max_concurrent_tasks`"; name the variable instead.
    if "- at `$." in message:
        detail, _, where = message.rpartition(" - at `$.")
        field = where.rstrip("`").split("[")[0].split(".")[0]
        return f"{PREFIX}{field.upper()}: {detail}"
    return message
