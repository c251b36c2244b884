"""The rule that task arguments and results are plain JSON data, checked before anything is stored.

Integers are held to the 64-bit signed range every store keeps exactly (SQLite's INTEGER, and what a
JSON reader in another language can read back); a larger one (or one past Python's int-to-str digit
limit, which no encoder can write) is refused here, at the edge, never found by the repository.
"""

from __future__ import annotations

import math
from typing import Any

import msgspec

from domain.errors import NotJsonValue

_MAX_DEPTH = 200
INT_MIN = -(2**63)
INT_MAX = 2**63 - 1

_encoder = msgspec.json.Encoder()


def json_size(value: Any) -> int:
    """The size in bytes of ``value`` encoded as the repositories store it (exact, not an estimate).

    Raises :class:`NotJsonValue` when the encoder refuses it.
    """
    try:
        return len(_encoder.encode(value))
    except (TypeError, ValueError, OverflowError, msgspec.EncodeError) as exc:
        raise NotJsonValue(f"cannot be encoded as JSON: {exc}") from None


def ensure_json(value: Any, what: str) -> None:
    """Raise :class:`NotJsonValue` unless ``value`` is JSON: None, bool, int, float, str, list/tuple, dict[str, ...]."""
    _check(value, what, 0)


def _check(value: Any, where: str, depth: int) -> None:
    if depth > _MAX_DEPTH:
        raise NotJsonValue(f"{where} nests deeper than {_MAX_DEPTH} levels")
    if value is None or isinstance(value, (bool, str)):
        return
    if isinstance(value, int):
        if not INT_MIN <= value <= INT_MAX:
            raise NotJsonValue(
                f"{where} is an integer of {_digits(value)} digits, outside the 64-bit signed range that is stored"
            )
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise NotJsonValue(f"{where} is {value!r}, which JSON cannot represent")
        return
    if isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _check(item, f"{where}[{index}]", depth + 1)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise NotJsonValue(f"{where} has a key {key!r} of type {type(key).__name__}; JSON keys are strings")
            _check(item, f"{where}[{key!r}]", depth + 1)
        return
    raise NotJsonValue(f"{where} is a {type(value).__name__}, which is not JSON-serializable")


def _digits(value: int) -> int:
    """How many decimal digits ``value`` has, without converting it to a string (which may be refused)."""
    return max(len(str(abs(value))) if value.bit_length() < 10_000 else int(value.bit_length() * 0.30103), 1)
