"""What runs around each call of a task: Celery's task signals and the task's handlers.

:func:`instrumented` wraps the function a task registers, so that ``task_prerun``,
``task_success``, ``task_retry``, ``task_failure``, ``task_postrun`` ... and ``on_success``,
``on_failure``, ``on_retry``, ``after_return`` run as Celery's worker runs them, in the task's own
thread (or on its loop), for engine jobs and eager runs alike. It is apart from the task class
because it decides what an outcome means (a retry, a failure, a rejection, a replacement) the way
the engine will take it.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
from collections.abc import Callable
from typing import Any

from application.execution import JobCancelled, Reject, ReplaceRequested, RetryRequested, current_job
from domain.json_values import ensure_json
from entrypoints.compat import signals
from entrypoints.compat.base_task import Task
from entrypoints.compat.eager import EagerReplaced, exhausted, exhausted_error
from entrypoints.compat.errbacks import errback_arguments, takes_several_positionals
from entrypoints.compat.request import ActiveCall, active_call
from entrypoints.compat.results import AsyncResult

#: The name this logger had before the module was split out of ``tasks``: logging set up for it still applies.
log = logging.getLogger("entrypoints.compat.tasks")


_HANDLERS = ("on_success", "on_failure", "on_retry", "after_return")


def _has_handlers(task: Task) -> bool:
    return any(getattr(type(task), hook) is not getattr(Task, hook) for hook in _HANDLERS)


def instrumented(task: Task, call: Callable[..., Any]) -> Callable[..., Any]:
    """``call`` (what the engine runs) wrapped so that Celery's task signals and the task's handlers
    run around it, in the task's own thread (or on its loop, for an async task). Costs one check
    when nothing listens."""
    handlers = _has_handlers(task)
    errback_capable = not task.bind and takes_several_positionals(call)

    if inspect.iscoroutinefunction(call):

        async def run_async(*args: Any, **kwargs: Any) -> Any:
            if errback_capable:
                args = errback_arguments(args)
            if not handlers and not signals.any_task_receivers():
                return _stored_form(await call(*args, **kwargs))
            active = active_call(task.name)
            if active is None:
                return _stored_form(await call(*args, **kwargs))
            _received(active)
            _prerun(task, active, args, kwargs)
            try:
                value = await call(*args, **kwargs)
            except asyncio.CancelledError:
                if active.context is not None and not active.context.cancelled:  # a time limit
                    signals.interrupted.add(active.request.id or "")
                raise
            except JobCancelled:
                raise
            except BaseException as exc:
                _raised(task, active, args, kwargs, exc)
                raise
            _returned(task, active, args, kwargs, value)
            return _stored_form(value)

        wrapped: Callable[..., Any] = run_async
    else:

        def run(*args: Any, **kwargs: Any) -> Any:
            if errback_capable:
                args = errback_arguments(args)
            if not handlers and not signals.any_task_receivers():
                return _stored_form(call(*args, **kwargs))
            active = active_call(task.name)
            if active is None:
                return _stored_form(call(*args, **kwargs))
            _received(active)
            _prerun(task, active, args, kwargs)
            try:
                value = call(*args, **kwargs)
            except JobCancelled:  # revoked or timed out from outside: the engine's events tell
                raise
            except BaseException as exc:
                _raised(task, active, args, kwargs, exc)
                raise
            _returned(task, active, args, kwargs, value)
            return _stored_form(value)

        wrapped = run
    functools.update_wrapper(wrapped, call)
    wrapped.__signature__ = _signature_of(call)  # type: ignore[attr-defined]
    return wrapped


def _stored_form(value: Any) -> Any:
    """What a task's return value is stored as: a result handle becomes Celery's ``as_tuple()`` form."""
    return value.as_tuple() if isinstance(value, AsyncResult) else value


def _signature_of(call: Callable[..., Any]) -> inspect.Signature:
    try:
        return inspect.signature(call, eval_str=True)
    except (NameError, SyntaxError, TypeError):
        return inspect.signature(call)


def _received(active: ActiveCall) -> None:
    """Celery's ``task_received`` for an engine job about to run: sent as the worker's consumer sends
    it, outside the job (what a receiver submits is not the job's child)."""
    if active.frame is not None or not signals.task_received.receivers:
        return
    token = current_job.set(None)
    try:
        signals.task_received.send(sender=None, request=active.request)
    finally:
        current_job.reset(token)


def _prerun(task: Task, active: ActiveCall, args: Any, kwargs: Any) -> None:
    signals.task_prerun.send(sender=task, task_id=active.request.id, task=task, args=args, kwargs=kwargs)


def _postrun(task: Task, active: ActiveCall, args: Any, kwargs: Any, retval: Any, state: str) -> None:
    signals.task_postrun.send(
        sender=task, task_id=active.request.id, task=task, args=args, kwargs=kwargs, retval=retval, state=state
    )


def _handler(task: Task, hook: str, *args: Any) -> None:
    try:
        getattr(task, hook)(*args)
    except Exception:
        log.exception("%s.%s raised", task.name, hook)


def _returned(task: Task, active: ActiveCall, args: Any, kwargs: Any, value: Any) -> None:
    if active.frame is None:
        try:
            ensure_json(value, f"result of {task.name}")
        except Exception as exc:  # the engine fails the job with this very error
            _raised(task, active, args, kwargs, exc)
            raise
    _succeeded(task, active, args, kwargs, value)


def _succeeded(task: Task, active: ActiveCall, args: Any, kwargs: Any, value: Any) -> None:
    task_id = active.request.id
    _handler(task, "on_success", value, task_id, args, kwargs)
    signals.task_success.send(sender=task, result=value)
    _handler(task, "after_return", "SUCCESS", value, task_id, args, kwargs, None)
    _postrun(task, active, args, kwargs, value, "SUCCESS")


def _raised(task: Task, active: ActiveCall, args: Any, kwargs: Any, exc: BaseException) -> None:
    """What the task's exception means, as the engine (or the eager run) will take it: a retry, a
    failure (a retry past the limit included), or a replacement."""
    if isinstance(exc, EagerReplaced):
        outcome = exc.result
        if outcome.failed():
            _failed(task, active, args, kwargs, outcome.result)
        else:
            _succeeded(task, active, args, kwargs, outcome.result)
        return
    if isinstance(exc, ReplaceRequested):
        _postrun(task, active, args, kwargs, exc, "IGNORED")  # Celery: replaced is Ignore
        return
    retry: RetryRequested | None = exc if isinstance(exc, RetryRequested) else None
    definition = task.definition
    if retry is None and definition.autoretry_for and isinstance(exc, definition.autoretry_for):
        retry = definition.autoretry(exc)
    if retry is None and isinstance(exc, Reject):
        _rejected(task, active, args, kwargs, exc)
        return
    if retry is None:
        _failed(task, active, args, kwargs, exc)
        return
    limit = exhausted(retry, active.request.retries, active.max_retries)
    if limit is not False:
        _failed(task, active, args, kwargs, exhausted_error(retry, task.name or "", active.request.id, limit))
        return
    einfo = signals.exception_info(retry.exc if retry.exc is not None else retry)
    _handler(task, "on_retry", retry.exc, active.request.id, args, kwargs, einfo)
    signals.task_retry.send(sender=task, request=active.request, reason=retry, einfo=einfo)
    _postrun(task, active, args, kwargs, retry, "RETRY")


def _rejected(task: Task, active: ActiveCall, args: Any, kwargs: Any, exc: Reject) -> None:
    """Celery's ``Reject``: no handler runs; ``task_postrun`` says REJECTED, and a rejection without
    requeue (which fails the job) sends ``task_failure``, as Celery's worker does (not in an eager run)."""
    _postrun(task, active, args, kwargs, exc, "REJECTED")
    if not exc.requeue and active.frame is None:
        einfo = signals.exception_info(exc)
        signals.task_failure.send(
            sender=task,
            task_id=active.request.id,
            exception=exc,
            args=args,
            kwargs=kwargs,
            traceback=einfo.tb,
            einfo=einfo,
        )


def _failed(task: Task, active: ActiveCall, args: Any, kwargs: Any, exc: BaseException) -> None:
    einfo = signals.exception_info(exc)
    task_id = active.request.id
    _handler(task, "on_failure", exc, task_id, args, kwargs, einfo)
    signals.task_failure.send(
        sender=task, task_id=task_id, exception=exc, args=args, kwargs=kwargs, traceback=einfo.tb, einfo=einfo
    )
    _handler(task, "after_return", "FAILURE", exc, task_id, args, kwargs, einfo)
    _postrun(task, active, args, kwargs, exc, "FAILURE")
