"""``current_app``: the settings Celery code reads and writes through ``app.conf`` (``task.app.conf``).

Only settings this engine honours exist here; setting any other raises AttributeError, so a
migrated ``app.conf.x = ...`` is never silently ignored.
"""

from __future__ import annotations

from typing import Any


class Conf:
    """Celery's ``app.conf`` for the settings that apply in-process.

    ``task_always_eager``: ``.delay()`` / ``.apply_async()`` run the task in the caller, as ``.apply()``
    (Celery users' test suites rely on it). ``task_eager_propagates``: an eagerly run task's error is
    raised at once. ``task_allow_error_cb_on_chord_header``: a chord's ``link_error`` also goes to every
    header task, not only the body. ``broker_pool_acquire_timeout`` (default None): accepted and
    kept, with nothing to bound: there is no broker connection pool, so submitting a job never waits
    for a connection (it commits to the engine's storage directly). ``beat_schedule``: Celery beat's
    periodic schedules, declared in code and reconciled with the stored ones when an engine starts (see
    README, "Periodic schedules"); ``timezone`` (default UTC): the zone their ``crontab`` entries are read in.
    """

    __slots__ = (
        "_beat_schedule",
        "_beat_set",
        "broker_pool_acquire_timeout",
        "task_allow_error_cb_on_chord_header",
        "task_always_eager",
        "task_eager_propagates",
        "timezone",
    )

    def __init__(self) -> None:
        self.task_always_eager = False
        self.task_eager_propagates = False
        self.task_allow_error_cb_on_chord_header = False
        self.broker_pool_acquire_timeout: float | None = None
        self.timezone: str | None = None
        self._beat_schedule: dict[str, Any] = {}
        self._beat_set = False

    @property
    def beat_schedule(self) -> dict[str, Any]:
        return self._beat_schedule

    @beat_schedule.setter
    def beat_schedule(self, value: dict[str, Any]) -> None:
        if not isinstance(value, dict):
            raise TypeError(f"beat_schedule must be a dict of entries by name, not {type(value).__name__}")
        self._beat_schedule = value
        self._beat_set = True

    @property
    def beat_declared(self) -> bool:
        """Whether code declared a ``beat_schedule`` (set, even to ``{}``, or filled in): only then are the
        stored schedules declared in code reconciled with it (and removed when absent from it)."""
        return self._beat_set or bool(self._beat_schedule)

    def update(self, values: dict[str, Any] | None = None, **more: Any) -> None:
        for key, value in {**(values or {}), **more}.items():
            setattr(self, key, value)


class App:
    """The one application object: ``current_app.conf`` and what ``task.app`` returns."""

    def __init__(self) -> None:
        self.conf = Conf()

    def register_task(self, task: Any) -> Any:
        """Register a task object, as Celery's ``app.register_task(MyTask())`` (a class-based task)."""
        from entrypoints.compat.tasks import register_task

        return register_task(task)

    def task(self, *args: Any, **options: Any) -> Any:
        """Celery's ``@app.task`` (the same as ``shared_task``)."""
        from entrypoints.compat.tasks import create_compatible_task

        return create_compatible_task(*args, **options)

    @property
    def tasks(self) -> dict[str, Any]:
        """The registered task objects by name (Celery's ``app.tasks``)."""
        from entrypoints.compat.tasks import registered_tasks

        return registered_tasks()


current_app = App()
