"""A task's exception, stored by ``error_info`` and rebuilt by ``exception_from``, as Celery's JSON backend does."""

from __future__ import annotations

import errno
import sys
import types
from pathlib import Path
from typing import Any

import msgspec
import pytest

from application.outcomes import error_info
from domain.job import ErrorInfo
from entrypoints.compat import results
from entrypoints.compat.exceptions import ChordError, TaskError, TaskRevokedError, exception_from


class ExpectedException(Exception):
    """Equal to another one with the same args (as in Celery's integration tests)."""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ExpectedException) and self.args == other.args

    def __hash__(self) -> int:
        return hash(self.args)


class NeedsBar(Exception):
    """Requires ``bar``, passes only ``foo`` on: it cannot be rebuilt from its args (Celery's UnpickleableException)."""

    def __init__(self, foo: Any, bar: Any = None) -> None:
        if bar is None:
            raise TypeError("bar must be provided")
        super().__init__(foo)
        self.bar = bar


class Elsewhere(Exception):
    """Poses as a class of a module no process here has imported."""


Elsewhere.__module__ = "never_imported_pkg.errors"


def raised(exc: BaseException) -> BaseException:
    """``exc`` after being raised, so it has a traceback as a task's exception does."""
    try:
        raise exc
    except BaseException as caught:
        return caught


def stored(exc: BaseException) -> ErrorInfo:
    """The error as the SQLite repository stores it and reads it back (JSON)."""
    return msgspec.json.decode(msgspec.json.encode(error_info(raised(exc))), type=ErrorInfo)


def round_trip(exc: BaseException) -> BaseException:
    return exception_from(stored(exc))


def test_error_info_keeps_the_name_the_message_the_module_and_the_args() -> None:
    info = error_info(raised(ValueError("bad value", 42)))
    assert (info.type, info.message, info.module, info.args) == (
        "ValueError",
        "('bad value', 42)",
        "builtins",
        ["bad value", 42],
    )
    assert info.traceback is not None and "ValueError" in info.traceback


def test_a_builtin_with_several_args_keeps_them() -> None:
    rebuilt = round_trip(ValueError("bad value", 42))
    assert type(rebuilt) is ValueError
    assert rebuilt.args == ("bad value", 42)
    assert str(rebuilt) == str(ValueError("bad value", 42))


def test_a_builtin_with_no_args_has_none() -> None:
    rebuilt = round_trip(RuntimeError())
    assert type(rebuilt) is RuntimeError and rebuilt.args == ()


def test_a_key_error_is_not_quoted_twice() -> None:
    rebuilt = round_trip(KeyError("k"))
    assert type(rebuilt) is KeyError
    assert rebuilt.args == ("k",)
    assert str(rebuilt) == "'k'"


def test_a_file_not_found_error_keeps_its_errno_strerror_and_filename(tmp_path: Path) -> None:
    missing = tmp_path / "missing.txt"
    try:
        missing.open()
    except FileNotFoundError as exc:
        original = exc
    rebuilt = exception_from(stored(original))
    assert type(rebuilt) is FileNotFoundError
    assert isinstance(rebuilt, FileNotFoundError)
    assert (rebuilt.errno, rebuilt.strerror, rebuilt.filename) == (errno.ENOENT, original.strerror, str(missing))
    assert str(rebuilt) == str(original)


def test_an_os_error_with_two_file_names_keeps_both() -> None:
    original = OSError(errno.EXDEV, "Invalid cross-device link", "/a", None, "/b")
    rebuilt = round_trip(original)
    assert type(rebuilt) is type(original)
    assert (rebuilt.errno, rebuilt.filename, rebuilt.filename2) == (errno.EXDEV, "/a", "/b")  # type: ignore[attr-defined]
    assert str(rebuilt) == str(original)


def test_a_path_file_name_is_stored_as_its_string() -> None:
    rebuilt = round_trip(FileNotFoundError(errno.ENOENT, "No such file or directory", Path("/nowhere/x")))
    assert type(rebuilt) is FileNotFoundError and rebuilt.filename == "/nowhere/x"


def test_an_os_error_without_errno_keeps_its_args() -> None:
    rebuilt = round_trip(ConnectionError("refused"))
    assert type(rebuilt) is ConnectionError and rebuilt.args == ("refused",)


def test_a_user_exception_of_an_imported_module_is_rebuilt_as_that_class_and_is_equal() -> None:
    info = stored(ExpectedException("Task expected to fail", "test"))
    assert info.module == __name__ and info.type == "ExpectedException"
    rebuilt = exception_from(info)
    assert type(rebuilt) is ExpectedException
    assert rebuilt == ExpectedException("Task expected to fail", "test")
    with pytest.raises(ExpectedException):
        raise rebuilt


def test_a_class_of_a_module_not_imported_is_a_task_error_of_that_name_and_nothing_is_imported() -> None:
    rebuilt = round_trip(Elsewhere("x", 1))
    assert isinstance(rebuilt, TaskError)
    assert type(rebuilt).__name__ == "Elsewhere"
    assert type(rebuilt).__module__ == "never_imported_pkg.errors"
    assert rebuilt.args == ("x", 1)
    assert "never_imported_pkg" not in sys.modules
    assert type(round_trip(Elsewhere("y"))) is type(rebuilt), "one class per (module, name)"


def test_the_same_name_in_another_module_is_another_class() -> None:
    one = exception_from(ErrorInfo(type="Boom", message="", module="pkg_one_not_imported", args=[]))
    two = exception_from(ErrorInfo(type="Boom", message="", module="pkg_two_not_imported", args=[]))
    assert type(one) is not type(two)


def test_a_stored_name_that_is_not_an_exception_class_is_never_called() -> None:
    rebuilt = exception_from(ErrorInfo(type="system", message="rm -rf /", module="os", args=["rm -rf /"]))
    assert isinstance(rebuilt, TaskError) and type(rebuilt).__name__ == "system"
    assert rebuilt.args == ("rm -rf /",)


def test_a_modules_getattr_hook_is_not_run(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[str] = []

    def lazy(name: str) -> Any:
        asked.append(name)
        return ValueError

    module = types.ModuleType("lazy_pkg")
    module.__getattr__ = lazy  # type: ignore[method-assign]
    monkeypatch.setitem(sys.modules, "lazy_pkg", module)
    rebuilt = exception_from(ErrorInfo(type="Lazy", message="m", module="lazy_pkg", args=["m"]))
    assert isinstance(rebuilt, TaskError) and type(rebuilt).__name__ == "Lazy"
    assert asked == []


def test_a_base_exception_that_stops_the_caller_is_not_rebuilt_as_itself() -> None:
    for exc in (SystemExit(3), KeyboardInterrupt()):
        rebuilt = round_trip(exc)
        assert type(rebuilt).__name__ == type(exc).__name__
        assert isinstance(rebuilt, TaskError)


def test_arguments_that_are_not_json_become_their_repr() -> None:
    thing = object()
    info = stored(ValueError({1, 2}, (1, "a"), thing, {"k": [1.5, None]}, float("nan")))
    assert info.args == ["{1, 2}", [1, "a"], repr(thing), {"k": [1.5, None]}, "nan"]
    rebuilt = exception_from(info)
    assert type(rebuilt) is ValueError
    assert rebuilt.args == ("{1, 2}", [1, "a"], repr(thing), {"k": [1.5, None]}, "nan")


def test_an_exception_whose_constructor_needs_more_than_its_args_falls_back_as_celery_does() -> None:
    rebuilt = round_trip(NeedsBar("foo", "bar"))
    assert isinstance(rebuilt, TaskError)
    assert type(rebuilt).__name__ == "NeedsBar"
    assert "NeedsBar" in str(rebuilt) and "foo" in str(rebuilt)
    assert rebuilt.__notes__[0].startswith("remote traceback:\n")
    assert "NeedsBar" in rebuilt.__notes__[0]


def test_the_remote_traceback_is_a_note() -> None:
    rebuilt = round_trip(ExpectedException("x"))
    assert len(rebuilt.__notes__) == 1
    assert rebuilt.__notes__[0].startswith("remote traceback:\nTraceback")
    assert exception_from(ErrorInfo(type="ValueError", message="m")).__notes__ == []


def test_an_error_stored_before_module_and_args_decodes_and_rebuilds_from_its_message() -> None:
    old = msgspec.json.decode(b'{"type":"KeyError","message":"\'x\'","traceback":"tb"}', type=ErrorInfo)
    assert (old.module, old.args) == (None, None)
    rebuilt = exception_from(old)
    assert type(rebuilt) is KeyError and rebuilt.args == ("'x'",)
    assert rebuilt.__notes__ == ["remote traceback:\ntb"]
    unknown = exception_from(ErrorInfo(type="SomethingCustom", message="went wrong"))
    assert isinstance(unknown, TaskError) and type(unknown).__name__ == "SomethingCustom"
    assert str(unknown) == "went wrong"


def test_the_engines_own_errors_stored_without_module_keep_their_classes() -> None:
    chord = exception_from(ErrorInfo(type="ChordError", message="Dependency j (t) raised ValueError: bad"))
    assert type(chord) is ChordError and str(chord) == "Dependency j (t) raised ValueError: bad"
    assert type(exception_from(ErrorInfo(type="TaskRevokedError", message="revoked"))) is TaskRevokedError


def test_results_still_exports_the_exceptions() -> None:
    assert results.TaskError is TaskError
    assert results.ChordError is ChordError
    assert results.TaskRevokedError is TaskRevokedError
    assert results.exception_from is exception_from
