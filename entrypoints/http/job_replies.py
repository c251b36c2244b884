"""The answers of ``POST /jobs`` and ``GET /jobs/{id}``, made in one place: the controller in ``jobs.py`` and
the fast path in ``fast_path.py`` both answer with these, so there is one implementation of each."""

from __future__ import annotations

from typing import NamedTuple

import msgspec

from application.idempotency import Idempotency
from application.job_service import JobService
from entrypoints.http.schemas import JobOut, JobSubmission

# msgspec's encoder gives the bytes Litestar's would for a JobOut (JSON values only), without Litestar
# resolving the app's type encoders for each response.
_encode = msgspec.json.Encoder().encode


class Submitted(NamedTuple):
    """A committed submission: where the job is (the ``Location`` header), the job as JSON, and whether this
    request created it (False: a repeat under an idempotency key, answered with the job as it is now)."""

    location: str
    body: bytes
    created: bool = True

    @property
    def status(self) -> int:
        return 202 if self.created else 200


async def submit_job(jobs: JobService, submission: JobSubmission, idempotency: Idempotency | None = None) -> Submitted:
    """Submit the job (committed before this returns); the answer of a ``202``, or of a ``200`` when
    ``idempotency`` names an earlier submission of the same request."""
    signature = submission.signature(jobs.now())
    if idempotency is None:
        job, created = await jobs.submit(signature), True
    else:
        job, created = await jobs.submit_once(signature, idempotency)
    return Submitted(location=f"/jobs/{job.id}", body=_encode(JobOut.of(job)), created=created)


async def read_job(jobs: JobService, job_id: str) -> bytes:
    """The job as JSON; raises ``NotFound`` for an unknown id."""
    return _encode(JobOut.of(await jobs.get(job_id)))
