"""Celery's callbacks: which ``link`` / ``link_error`` canvases a finished job applies, with which arguments.

A success applies each ``link`` with the result prepended (unless immutable). A failure applies each
``link_error``: an old-style errback (a task taking one argument, a bound task, or a canvas) gets the
failed task's id prepended; a new-style errback (a plain task taking more than one positional
argument, or ``*args``) gets ``(request, exc, traceback)`` as JSON: the failed request as a dict,
the exception as ``{"type", "message", "module", "args"}`` and the traceback text. Celery calls new-style
errbacks in the worker; here they are jobs of their own, stored in the same commit as the failure.
When a chord fails in its header, the errbacks of its body are applied as if the body had failed
with a ``ChordError`` (Celery's ``chord_error_from_stack``).
"""

from __future__ import annotations

from typing import Any

import msgspec

from application.registry import TaskRegistry
from domain.canvas import Canvas, Chord, Signature, first_leaf, node_at, partial
from domain.job import CallOptions, ErrorInfo, Job
from domain.states import JobState
from domain.workflow import Lineage

Callback = tuple[Canvas, Lineage, CallOptions]
"""A canvas to apply, the lineage of the jobs it creates, and options they carry (``errback_of``)."""

_NONE = CallOptions()


def callbacks_for(job: Job, registry: TaskRegistry) -> list[Callback]:
    """The callbacks ``job``, just finished, applies: its links on success, its errbacks on failure."""
    options = job.options
    lineage = Lineage(parent_id=job.id, root_id=options.root_id or job.id)
    if job.state == JobState.SUCCESS and options.link:
        return [(partial(link, [job.result], {}), lineage, _NONE) for link in options.link]
    if job.state == JobState.FAILURE and options.link_error and job.error is not None:
        request = request_dict(job)
        return [_errback(errback, request, job.error, lineage, registry) for errback in options.link_error]
    return []


def chord_errbacks(
    canvas: Canvas, failed_path: str, failed_job_id: str, error: ErrorInfo, registry: TaskRegistry
) -> list[Callback]:
    """The errbacks of every chord whose header the failure at ``failed_path`` broke: its body's first
    task's ``link_error``, called as if that task had failed with a ``ChordError``."""
    callbacks: list[Callback] = []
    segments = failed_path.split(".") if failed_path else []
    for depth in range(len(segments)):
        node = node_at(canvas, ".".join(segments[:depth]))
        if not isinstance(node, Chord) or segments[depth] == "b":
            continue
        lead = first_leaf(node.body)
        if lead is None or not lead.link_error or lead.id is None:
            continue
        chord_error = ErrorInfo(
            type="ChordError", message=f"Dependency {failed_job_id} raised {error.type}({error.message!r})"
        )
        request = {"id": lead.id, "task": lead.task, "args": lead.args, "kwargs": lead.kwargs, "group": node.id}
        lineage = Lineage(parent_id=lead.id, root_id=lead.id)
        callbacks.extend(_errback(errback, request, chord_error, lineage, registry) for errback in lead.link_error)
    return callbacks


def _errback(
    errback: Canvas, request: dict[str, Any], error: ErrorInfo, lineage: Lineage, registry: TaskRegistry
) -> Callback:
    if isinstance(errback, Signature) and not errback.immutable:
        definition = registry.find(errback.task)
        if definition is not None and definition.takes_errback_request:
            exc = {"type": error.type, "message": error.message, "module": error.module, "args": error.args}
            args: list[Any] = [request, exc, error.traceback]
            return partial(errback, args, {}), lineage, CallOptions(errback_of=request["id"])
    return partial(errback, [request["id"]], {}), lineage, _NONE


def request_dict(job: Job) -> dict[str, Any]:
    """The JSON form of a job's Celery request (what ``self.request`` shows, and new-style errbacks get)."""
    options = job.options
    return {
        "id": job.id,
        "task": job.task,
        "args": job.args,
        "kwargs": job.kwargs,
        "retries": job.retries,
        "eta": options.eta,
        "expires": options.expires,
        "root_id": options.root_id or job.id,
        "parent_id": options.parent_id,
        "group": options.group_id,
        "group_index": options.group_index,
        "headers": options.headers,
        "delivery_info": delivery_info(job),
        "ignore_result": options.ignore_result,
    }


def delivery_info(job: Job) -> dict[str, Any]:
    """Celery's ``request.delivery_info`` for a job: its queue, routing key and priority."""
    queue = job.options.queue or "celery"
    return {
        "exchange": "",
        "routing_key": job.options.routing_key or queue,
        "priority": job.priority,
        "redelivered": job.options.redelivered,
        "queue": queue,
    }


def with_errback_of(job: Job, failed_job_id: str) -> Job:
    return msgspec.structs.replace(job, options=msgspec.structs.replace(job.options, errback_of=failed_job_id))
