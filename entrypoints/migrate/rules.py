"""The classification table: which Celery construct runs here as it is, with a difference, or not at all.

Derived from the README's "Deliberate differences from Celery"; each detail says what to check or do.
"""

from __future__ import annotations

from typing import Final

from entrypoints.compat.options import SUPPORTED as CALL_OPTIONS
from entrypoints.migrate.findings import Status

TASK_OPTIONS: Final = frozenset(
    {
        *("name", "bind", "base", "max_retries", "default_retry_delay", "autoretry_for", "retry_kwargs"),
        *("retry_backoff", "retry_backoff_max", "retry_jitter", "time_limit", "soft_time_limit"),
        *("ignore_result", "track_started", "acks_late", "reject_on_worker_lost", "typing", "serializer"),
        *("priority", "queue", "expires", "concurrency_key", "concurrency_limit", "rate_limit", "pydantic"),
        *("pydantic_strict", "pydantic_context", "pydantic_dump_kwargs"),
    }
)
SIGNALS: Final = frozenset(
    {
        *("task_received", "task_prerun", "task_postrun", "task_success", "task_failure", "task_retry"),
        *("task_revoked", "before_task_publish", "after_task_publish"),
    }
)
BOUND_SUPPORTED: Final = frozenset({"request", "retry", "update_state", "replace", "add_to_chord", "name"})
SCHEDULE_SETTINGS: Final = frozenset({"beat_schedule", "CELERYBEAT_SCHEDULE", "CELERY_BEAT_SCHEDULE"})
EAGER_SETTINGS: Final = frozenset(
    {"task_always_eager", "task_eager_propagates", "CELERY_ALWAYS_EAGER", "CELERY_TASK_ALWAYS_EAGER"}
    | {"CELERY_EAGER_PROPAGATES_EXCEPTIONS", "CELERY_TASK_EAGER_PROPAGATES"}
)
SERIALIZER_SETTINGS: Final = frozenset(
    {"task_serializer", "result_serializer", "accept_content", "result_accept_content"}
    | {"CELERY_TASK_SERIALIZER", "CELERY_RESULT_SERIALIZER", "CELERY_ACCEPT_CONTENT"}
)
ROUTING_SETTINGS: Final = frozenset({"task_routes", "CELERY_ROUTES", "CELERY_TASK_ROUTES", "task_queues"})
SUPPORTED_SETTINGS: Final = frozenset({"timezone", "CELERY_TIMEZONE", "task_allow_error_cb_on_chord_header"})
NO_BROKER: Final = (
    "no broker or result backend here: jobs and results live in the engine's database "
    "(GEEKBLOG_DATABASE_URL / GEEKBLOG_DB_PATH); remove this setting"
)
PICKLE: Final = "pickle is refused: arguments and results are JSON only; pass ids, not objects, and use 'json'"


def verdict(status: Status, detail: str) -> tuple[Status, str]:
    return status, detail


def classify_setting(name: str, value: str) -> tuple[str, Status, str]:
    """(kind, status, detail) for one setting, given its source text."""
    if name in EAGER_SETTINGS:
        return "eager", "supported", "current_app.conf.task_always_eager / task_eager_propagates behave as Celery's"
    if name in SERIALIZER_SETTINGS:
        if "pickle" in value or "yaml" in value or "msgpack" in value:
            return "serializer", "unsupported", PICKLE
        return (
            "serializer",
            "difference",
            "JSON is the only serializer here: remove it (current_app.conf has no such setting)",
        )
    if name in ROUTING_SETTINGS:
        return "routing", "unsupported", "no router: set queue= on the task decorator or the call (see Queue controls)"
    if name in SUPPORTED_SETTINGS:
        return "setting", "supported", "set it on current_app.conf"
    if "broker" in name.lower() or "backend" in name.lower() or "result" in name.lower():
        return "setting", "difference", NO_BROKER
    return "setting", "difference", "not read by this engine: remove it (current_app.conf has no such setting)"


def classify_task_options(options: dict[str, str]) -> tuple[Status, str]:
    unknown = sorted(k for k in options if k not in TASK_OPTIONS)
    if unknown:
        return "unsupported", f"options not provided (TypeError at import): {', '.join(unknown)}; remove or replace"
    if "pickle" in options.get("serializer", ""):
        return "unsupported", PICKLE
    if options.get("acks_late", "True") == "False":
        return "unsupported", "acks_late=False raises TypeError: jobs are always acknowledged late; remove it"
    if "rate_limit" in options:
        return "difference", "rate_limit is one bucket per task for every engine of the database, not per worker"
    if "time_limit" in options or "soft_time_limit" in options:
        return "difference", "time limits stop a sync task at its next check, not by killing a process"
    return "supported", "becomes @create_compatible_task with the same options"


def classify_call_options(method: str, options: list[str]) -> tuple[Status, str]:
    unknown = sorted(k for k in options if k not in CALL_OPTIONS)
    if unknown:
        return "unsupported", f"call options not provided (TypeError): {', '.join(unknown)}; remove or replace"
    if "priority" in options:
        return "difference", "priority is any int, higher first (AMQP's meaning), not broker-dependent 0-9"
    return "supported", f".{method}() is awaitable on the engine's loop, blocking from a sync task's thread"


def classify_schedule(kind: str) -> tuple[Status, str]:
    if kind == "crontab":
        return (
            "supported",
            "crontab is read in current_app.conf.timezone; a missed tick is skipped unless missed='run_once'",
        )
    if kind == "solar":
        return "unsupported", "solar schedules are not provided: use a crontab at the times you need"
    return "difference", "an interval ticks on a fixed grid from its creation, not relative to the last run"
