"""Job and workflow states, and which state changes the engine allows."""

from __future__ import annotations

from enum import StrEnum


class JobState(StrEnum):
    """Lifecycle states, named as in Celery so existing code reads them unchanged."""

    PENDING = "PENDING"
    STARTED = "STARTED"
    RETRY = "RETRY"
    SUCCESS = "SUCCESS"
    FAILURE = "FAILURE"
    REVOKED = "REVOKED"


TERMINAL_STATES: frozenset[JobState] = frozenset({JobState.SUCCESS, JobState.FAILURE, JobState.REVOKED})
QUEUED_STATES: frozenset[JobState] = frozenset({JobState.PENDING, JobState.RETRY})
FAILED_STATES: frozenset[JobState] = frozenset({JobState.FAILURE, JobState.REVOKED})

_ALLOWED: dict[JobState, frozenset[JobState]] = {
    JobState.PENDING: frozenset({JobState.STARTED, JobState.REVOKED, JobState.FAILURE}),
    JobState.RETRY: frozenset({JobState.STARTED, JobState.REVOKED, JobState.FAILURE}),
    # STARTED -> PENDING is the re-queue of a job whose worker was lost.
    JobState.STARTED: frozenset(
        {JobState.SUCCESS, JobState.FAILURE, JobState.RETRY, JobState.REVOKED, JobState.PENDING}
    ),
    # A finished job only moves again by an explicit retry.
    JobState.FAILURE: frozenset({JobState.PENDING}),
    JobState.REVOKED: frozenset({JobState.PENDING}),
    JobState.SUCCESS: frozenset(),
}


def can_transition(current: JobState, target: JobState) -> bool:
    """Whether a job in ``current`` may move to ``target``."""
    return target in _ALLOWED[current]


def is_terminal(state: str) -> bool:
    """Whether ``state`` is final: the job will not run again on its own."""
    return state in TERMINAL_STATES
