"""Errors the domain and the services raise, each naming what went wrong."""

from __future__ import annotations


class DomainError(Exception):
    """Base of every error the engine raises on purpose."""


class NotFound(DomainError, LookupError):
    """No job, workflow or schedule has this id (``by``: or this name)."""

    def __init__(self, kind: str, ident: str, *, by: str = "id") -> None:
        super().__init__(f"no {kind} with {by} {ident!r}")
        self.kind = kind
        self.ident = ident


class UnknownTask(DomainError, LookupError):
    """A job names a task that is not registered; only registered names ever run."""

    def __init__(self, name: str) -> None:
        super().__init__(f"unknown task {name!r}: it is not registered")
        self.name = name


class InvalidTransition(DomainError):
    """The requested state change is not allowed from the job's (or workflow's) current state."""

    def __init__(self, ident: str, current: str, target: str, kind: str = "job") -> None:
        if current in ("SUCCESS", "FAILURE", "REVOKED") and target == "REVOKED":
            message = f"{kind} {ident} has already finished ({current})"
        else:
            message = f"{kind} {ident} is {current}; it cannot become {target}"
        super().__init__(message)
        self.ident = ident
        self.current = current
        self.target = target


class InvalidCanvas(DomainError, ValueError):
    """A workflow canvas is malformed or exceeds the size and depth limits."""


class NotJsonValue(DomainError, TypeError):
    """A task argument or result is not plain JSON data."""


class InvalidSchedule(DomainError, ValueError):
    """A countdown or ETA outside what the engine can schedule (years 1970 to 9999)."""


class InvalidArguments(DomainError, TypeError):
    """The arguments do not fit the task's parameters (refused at submission, not at run time)."""


class Conflict(DomainError):
    """A guarded write found the job changed underneath it (a lost lease, a race)."""


class WorkflowChanged(Conflict):
    """An advance was planned on a workflow's state that another engine has advanced since (its version
    moved on): nothing was stored; plan it again on the stored state."""


class IdInUse(DomainError, ValueError):
    """A task id given at submission (``task_id=``, ``freeze()``) names a job still in use (not finished,
    or part of a workflow not finished) by another call; a finished job's id may be given again, replacing
    it, and the same lone call again while it is unfinished is stored once."""

    def __init__(self, ident: str, task: str | None = None) -> None:
        held = f" (a call of {task})" if task is not None else ""
        super().__init__(
            f"task id {ident!r} names a job that has not finished{held}: it cannot be given to another call"
        )
        self.ident = ident


class IdempotencyKeyTaken(DomainError):
    """A commit carrying an idempotency key was refused whole: the key is stored already (another
    submission, maybe a concurrent one, used it). The caller reads what that submission stored."""

    def __init__(self, key: str) -> None:
        super().__init__(f"idempotency key {key!r} is already used")
        self.key = key


class InvalidIdempotencyKey(DomainError, ValueError):
    """An idempotency key that is empty, too long or not printable ASCII."""


class IdempotencyKeyReused(DomainError, ValueError):
    """An idempotency key (``Idempotency-Key``, ``idempotency_key=``) given again with a different request
    than the one it was first used for, while what that request created is kept."""

    def __init__(self, key: str, used_for: str) -> None:
        super().__init__(
            f"idempotency key {key!r} was used for a different request (it created {used_for}): "
            "a key stands for one request; use a new key for a new request"
        )
        self.key = key
        self.used_for = used_for


class InvalidCallOption(InvalidSchedule):
    """A call option (priority, max_retries, time limit) outside the range the engine can store and honour."""


class ResultTooLarge(DomainError, ValueError):
    """A result, progress meta, a workflow step's arguments or a workflow's stored total is past its limit.

    The message names the limit (its setting and value) and the size found (see ``domain.limits``); it is
    the only argument, so a caller reading the stored error back rebuilds the same exception.
    """


class ResultNotStorable(NotJsonValue):
    """A job's outcome (its result or progress meta) cannot be encoded or stored; the message says why.

    A ``TypeError``, as :class:`NotJsonValue`: the value is not data the engine can store."""


class NotStorable(DomainError, ValueError):
    """A repository cannot encode or store what a commit holds (an integer out of range, a value the
    JSON encoder refuses); nothing of that commit was stored. Storing it again cannot succeed."""
