"""Celery's ``celery.states`` names, so ``from ... import states; states.SUCCESS`` keeps working."""

from __future__ import annotations

from domain.states import JobState

PENDING = JobState.PENDING.value
STARTED = JobState.STARTED.value
RETRY = JobState.RETRY.value
SUCCESS = JobState.SUCCESS.value
FAILURE = JobState.FAILURE.value
REVOKED = JobState.REVOKED.value
PROGRESS = "PROGRESS"
#: Not a Celery state: what this engine reports for an id it has never seen (Celery would say PENDING).
UNKNOWN = "UNKNOWN"

READY_STATES = frozenset({SUCCESS, FAILURE, REVOKED})
UNREADY_STATES = frozenset({PENDING, STARTED, RETRY})
EXCEPTION_STATES = frozenset({RETRY, FAILURE, REVOKED})
PROPAGATE_STATES = frozenset({FAILURE, REVOKED})
ALL_STATES = frozenset({PENDING, STARTED, RETRY, SUCCESS, FAILURE, REVOKED})
