"""The task API in one import: ``@create_compatible_task``, ``Task``, ``Request`` and the registry.

The implementation lives in modules by concern; this module re-exports their public names so that
``from entrypoints.compat.tasks import ...`` (used by ``entrypoints.celery_compat``, the container,
task modules and the rest of the package) keeps working:

- :mod:`entrypoints.compat.base_task`: the ``Task`` class, what a task object can do;
- :mod:`entrypoints.compat.request`: ``self.request``, and which call is running;
- :mod:`entrypoints.compat.retry`: what ``retry()``'s options mean;
- :mod:`entrypoints.compat.instrumentation`: the signals and handlers around each call;
- :mod:`entrypoints.compat.errbacks`: a new-style errback's ``(request, exc, traceback)``;
- :mod:`entrypoints.compat.pydantic_support`: the ``pydantic=True`` option;
- :mod:`entrypoints.compat.registration`: the decorator, ``register_task`` and the registry.
"""

from __future__ import annotations

from entrypoints.compat.base_task import Task, check_time_limits
from entrypoints.compat.errbacks import Context
from entrypoints.compat.instrumentation import log
from entrypoints.compat.pydantic_support import pydantic_wrapper
from entrypoints.compat.registration import (
    F,
    create_compatible_task,
    default_registry,
    register_task,
    registered_tasks,
    task_named,
)
from entrypoints.compat.request import HOSTNAME, Request, eager_request, request_of
from entrypoints.compat.retry import retry_options

__all__ = [
    "HOSTNAME",
    "Context",
    "F",
    "Request",
    "Task",
    "check_time_limits",
    "create_compatible_task",
    "default_registry",
    "eager_request",
    "log",
    "pydantic_wrapper",
    "register_task",
    "registered_tasks",
    "request_of",
    "retry_options",
    "task_named",
]
