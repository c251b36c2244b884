"""Tasks raising the exceptions the exception-fidelity tests rebuild (Celery's ``t/integration/tasks.py`` ones)."""

from __future__ import annotations

from typing import Any

from entrypoints.celery_compat import create_compatible_task


class ExpectedException(Exception):
    """Equal to another one with the same args, as the exception of Celery's integration tests is."""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ExpectedException) and self.args == other.args

    def __hash__(self) -> int:
        return hash(self.args)


class UnpickleableException(Exception):
    """Its constructor requires ``bar``, which it does not pass on to ``Exception``: ``cls(*exc.args)`` fails."""

    def __init__(self, foo: Any, bar: Any = None) -> None:
        if bar is None:
            raise TypeError("bar must be provided")
        super().__init__(foo)
        self.bar = bar


@create_compatible_task(name="fidelity.fail")
def fail(*args: Any) -> None:
    raise ExpectedException("Task expected to fail", *args)


@create_compatible_task(name="fidelity.fail_unpickleable")
def fail_unpickleable(foo: Any, bar: Any) -> None:
    raise UnpickleableException(foo, bar)


@create_compatible_task(name="fidelity.retry_expected", bind=True, max_retries=1)
def retry_expected(self: Any, *args: Any) -> None:
    raise self.retry(exc=ExpectedException("retrying", *args), countdown=30)


@create_compatible_task(name="fidelity.bad_value")
def bad_value(message: str, value: Any) -> None:
    raise ValueError(message, value)


@create_compatible_task(name="fidelity.missing_file")
def missing_file(path: str) -> None:
    with open(path):
        pass
