"""The job for one call of a registered task: what a submission and every workflow step store.

Its options come from the call's signature, else from the task's definition (``@task(...)``
options), as Celery merges a call's options over its task's.
"""

from __future__ import annotations

from application.registry import TaskDefinition, TaskRegistry
from domain.canvas import Signature
from domain.job import CallOptions, Job
from domain.workflow import Lineage


def _concurrency(signature: Signature, definition: TaskDefinition) -> tuple[str | None, int | None]:
    """The call's concurrency key and limit, else the task's."""
    if signature.concurrency_key is not None:
        return signature.concurrency_key, signature.concurrency_limit
    return definition.concurrency_key, definition.concurrency_limit


def new_job(
    registry: TaskRegistry,
    job_id: str,
    signature: Signature,
    now: float,
    *,
    args: list[object] | None = None,
    workflow_id: str | None = None,
    node: str | None = None,
    lineage: Lineage | None = None,
    group: tuple[str | None, int | None] = (None, None),
) -> Job:
    """The job for one call of a registered task, its options taken from the signature, else the task.

    ``lineage`` gives Celery's parent and root ids (a lone job with none is its own root).
    """
    definition = registry.require(signature.task)
    if signature.eta is not None:
        due_at = signature.eta
    elif signature.countdown:
        due_at = now + signature.countdown
    else:
        due_at = now
    key, limit = _concurrency(signature, definition)
    options = CallOptions(
        eta=due_at if due_at != now else None,
        expires=signature.expires,
        soft_time_limit=signature.soft_time_limit
        if signature.soft_time_limit is not None
        else definition.soft_time_limit,
        queue=signature.queue,
        routing_key=signature.routing_key,
        headers=signature.headers,
        ignore_result=signature.ignore_result if signature.ignore_result is not None else definition.ignore_result,
        shadow=signature.shadow,
        parent_id=lineage.parent_id if lineage else None,
        root_id=lineage.root_id if lineage and lineage.root_id != job_id else None,  # None: itself
        group_id=group[0],
        group_index=group[1],
        link=signature.link,
        link_error=signature.link_error,
        replaced_task_nesting=lineage.replaced_task_nesting if lineage else 0,
        properties=signature.properties,
        argsrepr=signature.argsrepr,
        kwargsrepr=signature.kwargsrepr,
        concurrency_key=key,
        concurrency_limit=limit,
        rate_limit=definition.rate_limit,
    )
    return Job(
        id=job_id,
        task=signature.task,
        args=list(signature.args) if args is None else list(args),
        kwargs=dict(signature.kwargs),
        priority=signature.priority if signature.priority is not None else definition.priority,
        due_at=due_at,
        created_at=now,
        max_retries=signature.max_retries if signature.max_retries is not None else definition.max_retries,
        time_limit=signature.time_limit if signature.time_limit is not None else definition.time_limit,
        retry_on_worker_lost=definition.retry_on_worker_lost,
        workflow_id=workflow_id,
        node=node,
        options=options,
    )
