"""The answers of ``POST /jobs`` and ``GET /jobs/{id}``, made in one place: the controller in ``jobs.py`` and
the fast path in ``fast_path.py`` both answer with these, so there is one implementation of each."""

from __future__ import annotations

from typing import NamedTuple

import msgspec

from application.job_service import JobService
from entrypoints.http.schemas import JobOut, JobSubmission

# msgspec's encoder gives the bytes Litestar's would for a JobOut (JSON values only), without Litestar
# resolving the app's type encoders for each response.
_encode = msgspec.json.Encoder().encode


class Submitted(NamedTuple):
    """A committed submission: where the job is (the ``Location`` header) and the job as JSON."""

    location: str
    body: bytes


async def submit_job(jobs: JobService, submission: JobSubmission) -> Submitted:
    """Submit the job (committed before this returns); the answer of a ``202``."""
    job = await jobs.submit(submission.signature(jobs.now()))
    return Submitted(location=f"/jobs/{job.id}", body=_encode(JobOut.of(job)))


async def read_job(jobs: JobService, job_id: str) -> bytes:
    """The job as JSON; raises ``NotFound`` for an unknown id."""
    return _encode(JobOut.of(await jobs.get(job_id)))
