"""Limits on what a job and a workflow may store, so no result can make the process or the database swell.

Every size is the value's JSON encoding in bytes (:func:`domain.json_values.json_size`), the form the
repositories store, so it cannot be under-counted. Each limit is checked before the value is stored or
handed on: a result or progress meta before the job's outcome is stored, a workflow step's arguments
before its job is created, a workflow's running total before either grows it.
"""

from __future__ import annotations

import msgspec

from domain.errors import ResultTooLarge

MIB = 1024 * 1024


class Limits(msgspec.Struct, frozen=True, kw_only=True):
    """``max_result_bytes``: a job's result, and its progress meta (``GEEKBLOG_MAX_RESULT_BYTES``).
    ``max_step_args_bytes``: the positional arguments a workflow step is created with, its predecessors'
    results included (``GEEKBLOG_MAX_STEP_ARGS_BYTES``). ``max_workflow_bytes``: the arguments and results
    of all of a workflow's jobs together (``GEEKBLOG_MAX_WORKFLOW_BYTES``)."""

    max_result_bytes: int = 1 * MIB
    max_step_args_bytes: int = 2 * MIB
    max_workflow_bytes: int = 64 * MIB

    def __post_init__(self) -> None:
        for name in ("max_result_bytes", "max_step_args_bytes", "max_workflow_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")

    def check_result(self, size: int, what: str) -> None:
        if size > self.max_result_bytes:
            raise _too_large(what, size, self.max_result_bytes, "GEEKBLOG_MAX_RESULT_BYTES")

    def check_step_args(self, size: int, what: str) -> None:
        if size > self.max_step_args_bytes:
            raise _too_large(what, size, self.max_step_args_bytes, "GEEKBLOG_MAX_STEP_ARGS_BYTES")

    def check_workflow(self, total: int, what: str) -> None:
        if total > self.max_workflow_bytes:
            raise _too_large(what, total, self.max_workflow_bytes, "GEEKBLOG_MAX_WORKFLOW_BYTES")


DEFAULT_LIMITS = Limits()


def _too_large(what: str, size: int, limit: int, setting: str) -> ResultTooLarge:
    return ResultTooLarge(f"{what} is {size} bytes as JSON, over the limit of {limit} bytes ({setting})")
