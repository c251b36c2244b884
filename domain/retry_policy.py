"""How long a job waits before its next attempt, as Celery computes it."""

from __future__ import annotations

import msgspec


class RetryPolicy(msgspec.Struct, frozen=True, kw_only=True):
    """Celery's retry options: ``default_retry_delay``, ``retry_backoff`` (True or a factor), its cap and jitter."""

    default_retry_delay: float = 180.0
    retry_backoff: bool | float = False
    retry_backoff_max: float = 600.0
    retry_jitter: bool = True

    def delay(self, retries: int, *, countdown: float | None = None, random_fraction: float = 1.0) -> float:
        """Seconds before retry number ``retries + 1``; ``random_fraction`` in [0, 1] drives the jitter."""
        if countdown is not None:
            return max(countdown, 0.0)
        if not self.retry_backoff:
            return self.default_retry_delay
        factor = 1.0 if self.retry_backoff is True else float(self.retry_backoff)
        delay: float = min(factor * float(2**retries), self.retry_backoff_max)
        if self.retry_jitter:
            delay *= random_fraction
        return delay
