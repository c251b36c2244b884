"""Eager runs (Celery's ``apply()`` and ``task_always_eager``): a task or a whole canvas run in the
caller, synchronously, with no engine involved.

A canvas is planned by the same pure planner the engine uses (:func:`domain.planner.plan`); each
ready call runs here, in order, with a request that says ``is_eager``. As in Celery's eager mode:
``self.retry()`` runs the task again at once (no countdown) until its ``max_retries``;
``self.replace(sig)`` runs the replacement here and its result is the task's; ``link`` callbacks
are applied with the result (eagerly under ``task_always_eager`` or when no engine runs, else
through the engine), ``link_error`` errbacks with the failed task's id (old style, applied
eagerly) or called with ``(request, exc, traceback)`` (new style); ``update_state`` is recorded on
the :class:`EagerResult` only. Arguments and results are not turned into JSON (Celery's eager
mode does not serialize either).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from application.execution import JobContext, Reject, ReplaceRequested, RetryRequested, current_job
from application.outcomes import error_info
from domain import canvas as model
from domain.errors import UnknownTask
from domain.planner import LeafOutcome, plan
from domain.states import JobState

if TYPE_CHECKING:
    from entrypoints.compat.tasks import Request

log = logging.getLogger(__name__)

SUCCESS = "SUCCESS"
FAILURE = "FAILURE"
REVOKED = "REVOKED"
REJECTED = "REJECTED"
_PROPAGATE_STATES = frozenset({FAILURE, REVOKED})


class EagerResult:
    """Celery's ``EagerResult``: the outcome of a call that already ran here.

    ``result`` / ``info`` is the return value, or the exception for a failure (or a rejection:
    state REJECTED); ``get()`` returns the value or raises that exception (``propagate=False``:
    returns it). ``children`` are the results
    of a group's members (empty for a task); ``parent`` is the previous step's result in a chain (the
    header's in a chord). ``updates`` lists the ``(state, meta)`` of each ``update_state`` the task
    made while it ran (Celery stores those in its result backend; an eager run has none here).
    """

    def __init__(
        self,
        id: str | None,
        ret_value: Any,
        state: str,
        traceback: str | None = None,
        name: str | None = None,
        *,
        parent: EagerResult | None = None,
        children: list[EagerResult] | None = None,
        updates: list[tuple[str, Any]] | None = None,
    ) -> None:
        self.id = id
        self._result = ret_value
        self._state = state
        self._traceback = traceback
        self._name = name
        self.parent = parent
        self.children: list[EagerResult] = list(children or [])
        self.updates: list[tuple[str, Any]] = list(updates or [])

    @property
    def task_id(self) -> str | None:
        return self.id

    @property
    def name(self) -> str | None:
        return self._name

    @property
    def result(self) -> Any:
        """The task's return value, or its exception."""
        return self._result

    info = result

    @property
    def state(self) -> str:
        return self._state

    status = state

    @property
    def traceback(self) -> str | None:
        """The traceback text if the task failed."""
        return self._traceback

    @property
    def results(self) -> list[EagerResult]:
        """A group's member results (Celery's ``GroupResult.results``)."""
        return self.children

    def ready(self) -> bool:
        return True

    def successful(self) -> bool:
        return self._state == SUCCESS

    def failed(self) -> bool:
        return self._state == FAILURE

    def get(
        self, timeout: float | None = None, propagate: bool = True, disable_sync_subtasks: bool = True, **_: Any
    ) -> Any:
        """The value; for a failure, raise its exception (or return it with ``propagate=False``); None
        in any other state (REJECTED, or PENDING for a canvas part that never ran), as Celery's."""
        if self._state == SUCCESS:
            return self._result
        if self._state in _PROPAGATE_STATES:
            if propagate:
                self.maybe_throw()
            return self._result
        return None

    wait = get

    def maybe_throw(self, propagate: bool = True, callback: Any = None) -> None:
        if propagate and self._state in _PROPAGATE_STATES:
            error = self._result
            raise error if isinstance(error, BaseException) else Exception(error)

    def join(self, timeout: float | None = None, propagate: bool = True, **_: Any) -> Any:
        """A group's results in member order (as ``GroupResult.join``)."""
        return self.get(timeout=timeout, propagate=propagate)

    def forget(self) -> None:
        """Nothing is stored for an eager result."""

    def revoke(self, *_: Any, **__: Any) -> None:
        """As Celery's: the call already ran; the result just says REVOKED from now on."""
        self._state = REVOKED

    def then(self, callback: Callable[[EagerResult], Any], on_error: Any = None, weak: bool = False) -> Any:
        return callback(self)

    def __repr__(self) -> str:
        return f"<EagerResult: {self.id}>"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, EagerResult):
            return other.id == self.id
        if isinstance(other, str):
            return other == self.id
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.id)


# -- the request of the call running eagerly --------------------------------------------------


class EagerFrame:
    """One eagerly running call: its request, the ``max_retries`` it runs under, its updates."""

    __slots__ = ("max_retries", "outer_job", "request", "updates")

    def __init__(self, request: Request, max_retries: int | None, outer_job: JobContext | None) -> None:
        self.request = request
        self.max_retries = max_retries
        self.outer_job = outer_job
        self.updates: list[tuple[str, Any]] = []


current_eager: ContextVar[EagerFrame | None] = ContextVar("current_eager", default=None)


def innermost_frame() -> EagerFrame | None:
    """The eager call running in this context, if it is more recent than any engine job it runs in."""
    frame = current_eager.get()
    if frame is None or frame.outer_job is not current_job.get():
        return None
    return frame


class EagerReplaced(ReplaceRequested):
    """``self.replace(sig)`` in an eager run: the replacement already ran; ``result`` is its outcome."""

    def __init__(self, canvas: model.Canvas, result: EagerResult):
        super().__init__(canvas)
        self.result = result


def exhausted(retry: RetryRequested, retries: int, max_retries: int | None) -> int | bool | None:
    """Whether ``retry`` (asked at ``retries`` retries so far) goes past the limit; the limit if so."""
    limit = retry.max_retries if retry.max_retries_given else max_retries
    if limit is not None and retries >= limit:
        return limit
    return False


def exhausted_error(retry: RetryRequested, task: str, task_id: str | None, limit: Any) -> BaseException:
    """The exception a retry past the limit fails with (Celery: its ``exc``, else MaxRetriesExceededError)."""
    if retry.exc is not None:
        return retry.exc
    from application.dispatcher import MaxRetriesExceededError

    return MaxRetriesExceededError(f"{task} exceeded its {limit} retries (job {task_id})")


# -- running a canvas -------------------------------------------------------------------------


def apply_canvas(canvas: model.Canvas, *, throw: bool | None = None, retries: int = 0) -> EagerResult:
    """Run ``canvas`` (a domain Signature, Chain, Group or Chord) here and now; its EagerResult.

    ``throw`` (None: ``current_app.conf.task_eager_propagates``) raises a failure at once instead of
    storing it on the result. As in Celery's ``chain.apply()`` / ``chord.apply()``, a failure that a
    later step depends on (a chain's next step, a chord's body) is raised at once too. ``retries``
    is the ``request.retries`` the first call starts at (Celery's ``apply(retries=)``).
    """
    from entrypoints.compat.app import current_app

    if throw is None:
        throw = bool(current_app.conf.task_eager_propagates)
    return _Run(throw, retries).apply(canvas)


class _Run:
    def __init__(self, throw: bool, retries: int) -> None:
        self.throw = throw
        self.first_retries = retries

    def apply(self, canvas: model.Canvas) -> EagerResult:
        from entrypoints.compat.tasks import default_registry

        model.validate(canvas)
        for name in model.task_names(canvas):
            if name not in default_registry:
                raise UnknownTask(name)
        frozen = model.freeze(canvas, lambda: str(uuid.uuid4()))
        outcomes: dict[str, LeafOutcome] = {}
        results: dict[str, EagerResult] = {}
        while True:
            step = plan(frozen, outcomes)
            if step.finished:
                break
            if not step.ready:  # cannot happen: every call runs to an end here
                raise RuntimeError("eager run: nothing left to run in an unfinished canvas")
            for leaf in step.ready:
                retries, self.first_retries = self.first_retries, 0
                result = self._run_leaf(leaf.signature, list(leaf.args), dict(leaf.signature.kwargs), retries, leaf)
                results[leaf.path] = result
                outcomes[leaf.path] = _outcome(leaf.signature, result)
                if result.failed() and self.throw:
                    result.maybe_throw()
        if step.state != JobState.SUCCESS and step.failed_path is not None:
            failed = results[step.failed_path]
            if _has_dependent(frozen, step.failed_path):
                failed.maybe_throw()
        return _node_result(frozen, "", results, step.state == JobState.SUCCESS, step.result)

    # -- one call ------------------------------------------------------------------------------
    def _run_leaf(
        self, sig: model.Signature, args: list[Any], kwargs: dict[str, Any], retries: int, leaf: Any
    ) -> EagerResult:
        from entrypoints.compat.tasks import default_registry, eager_request, task_named

        definition = default_registry.require(sig.task)
        task = task_named(sig.task)
        task_id = sig.id or str(uuid.uuid4())
        max_retries = sig.max_retries if sig.max_retries is not None else definition.max_retries
        while True:
            request = eager_request(sig, task_id, args, kwargs, retries, leaf.group_id, leaf.group_index, definition)
            frame = EagerFrame(request, max_retries, current_job.get())
            token = current_eager.set(frame)
            try:
                value = _call(definition.fn, args, kwargs, sig.task)
            except EagerReplaced as replaced:
                outcome = replaced.result
                if outcome.failed():
                    return self._failed(sig, request, outcome.result, frame, task)
                result = EagerResult(task_id, outcome.result, SUCCESS, name=sig.task, updates=frame.updates)
                self._callbacks(sig, request, outcome.result)
                return result
            except RetryRequested as retry:
                again = self._retry(sig, task_id, retry, retries, max_retries)
                if isinstance(again, BaseException):
                    return self._failed(sig, request, again, frame, task)
                retries += 1
                args = retry.args_ if retry.args_ is not None else args
                kwargs = retry.kwargs_ if retry.kwargs_ is not None else kwargs
                continue
            except Exception as exc:
                if definition.autoretry_for and isinstance(exc, definition.autoretry_for):
                    again = self._retry(sig, task_id, definition.autoretry(exc), retries, max_retries)
                    if not isinstance(again, BaseException):
                        retries += 1
                        continue
                elif isinstance(exc, Reject):  # Celery: REJECTED, no errback; nothing requeues here
                    text = error_info(exc).traceback
                    return EagerResult(task_id, exc, REJECTED, traceback=text, name=sig.task, updates=frame.updates)
                return self._failed(sig, request, exc, frame, task)
            finally:
                current_eager.reset(token)
            result = EagerResult(task_id, value, SUCCESS, name=sig.task, updates=frame.updates)
            self._callbacks(sig, request, value)
            return result

    def _retry(
        self, sig: model.Signature, task_id: str, retry: RetryRequested, retries: int, max_retries: int | None
    ) -> BaseException | None:
        limit = exhausted(retry, retries, max_retries)
        if limit is False:
            return None
        return exhausted_error(retry, sig.task, task_id, limit)

    def _failed(
        self, sig: model.Signature, request: Request, exc: BaseException, frame: EagerFrame, task: Any
    ) -> EagerResult:
        text = error_info(exc).traceback
        result = EagerResult(request.id, exc, FAILURE, traceback=text, name=sig.task, updates=frame.updates)
        self._errbacks(sig, request, exc, text)
        return result

    # -- callbacks -----------------------------------------------------------------------------
    def _callbacks(self, sig: model.Signature, request: Request, value: Any) -> None:
        """Apply each ``link`` with the result, as Celery's tracer does after a success."""
        for link in sig.link:
            _apply_callback(model.partial(link, [value], {}), request)

    def _errbacks(self, sig: model.Signature, request: Request, exc: BaseException, text: str | None) -> None:
        """Celery's ``_call_task_errbacks``: a new-style errback (a plain task taking more than one
        positional argument) is called here with ``(request, exc, traceback)``; the others are applied
        eagerly with the failed task's id."""
        from entrypoints.compat.tasks import default_registry, task_named

        for errback in sig.link_error:
            if isinstance(errback, model.Signature) and not errback.immutable:
                definition = default_registry.find(errback.task)
                errback_task = task_named(errback.task)
                if definition is not None and errback_task is not None and definition.takes_errback_request:
                    try:
                        errback_task(request, exc, text, *errback.args, **errback.kwargs)
                    except Exception:
                        log.exception("errback %s of task %s raised", errback.task, request.id)
                    continue
            with _as_parent(request):
                apply_canvas(model.partial(errback, [request.id], {}))


def _apply_callback(canvas: model.Canvas, request: Request) -> None:
    """A ``link``: applied eagerly under ``task_always_eager`` (or with no engine), else submitted."""
    from entrypoints.compat import binding
    from entrypoints.compat.app import current_app

    if not current_app.conf.task_always_eager:
        try:
            binding.active()
        except binding.NoEngineRunning:
            pass
        else:
            binding.call(lambda engine: _submit(engine, canvas))
            return
    with _as_parent(request):
        apply_canvas(canvas)


async def _submit(engine: Any, canvas: model.Canvas) -> None:
    if isinstance(canvas, model.Signature):
        await engine.jobs.submit(canvas)
    else:
        await engine.jobs.submit_canvas(canvas)


class _as_parent:
    """Run what follows as if ``request``'s task were still running (Celery applies a task's callbacks
    while it is on the task stack, so they get it as their parent)."""

    def __init__(self, request: Request) -> None:
        self.frame = EagerFrame(request, None, current_job.get())
        self.token: Any = None

    def __enter__(self) -> None:
        self.token = current_eager.set(self.frame)

    def __exit__(self, *_: Any) -> None:
        current_eager.reset(self.token)


def _call(fn: Callable[..., Any], args: list[Any], kwargs: dict[str, Any], name: str) -> Any:
    if not asyncio.iscoroutinefunction(fn):
        return fn(*args, **kwargs)
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(fn(*args, **kwargs))
    raise RuntimeError(
        f"{name} is an async def task: it cannot run eagerly in a thread that runs an event loop "
        "(apply it from a thread without one, or submit it to the engine)"
    )


def _outcome(sig: model.Signature, result: EagerResult) -> LeafOutcome:
    if result.successful():
        return LeafOutcome(job_id=result.id or "", task=sig.task, state=JobState.SUCCESS, result=result.result)
    error = result.result
    info = error_info(error) if isinstance(error, BaseException) else None
    return LeafOutcome(job_id=result.id or "", task=sig.task, state=JobState.FAILURE, error=info)


def _has_dependent(canvas: model.Canvas, path: str) -> bool:
    """Whether a step of ``canvas`` takes the result of the call at ``path`` (so Celery's eager
    ``chain.apply()`` / ``chord.apply()`` would raise its failure at once)."""
    segments = path.split(".") if path else []
    node = canvas
    for segment in segments:
        if isinstance(node, model.Chain):
            index = int(segment)
            if index < len(node.steps) - 1:
                return True
            node = node.steps[index]
        elif isinstance(node, model.Chord):
            if segment != "b":
                return True
            node = node.body
        elif isinstance(node, model.Group):
            node = node.members[int(segment)]
        else:
            break
    return False


def _node_result(
    node: model.Canvas, path: str, results: dict[str, EagerResult], succeeded: bool, value: Any
) -> EagerResult:
    """The EagerResult of the canvas node at ``path``: a call's own; a chain's last step's (its
    ``parent`` the step before); a group's with its members as ``children``; a chord's body's."""
    prefix = f"{path}." if path else ""
    if isinstance(node, model.Signature):
        found = results.get(path)
        return found if found is not None else EagerResult(node.id, None, "PENDING", name=node.task)
    if isinstance(node, model.Chain):
        previous: EagerResult | None = None
        for index, step in enumerate(node.steps):
            current = _node_result(step, f"{prefix}{index}", results, False, None)
            if previous is not None and current.parent is None:
                current.parent = previous
            previous = current
        assert previous is not None
        return previous
    if isinstance(node, model.Group):
        members = [_node_result(m, f"{prefix}{i}", results, False, None) for i, m in enumerate(node.members)]
        return _group_result(node.id, members)
    assert isinstance(node, model.Chord)
    header = _group_result(
        node.id, [_node_result(m, f"{prefix}{i}", results, False, None) for i, m in enumerate(node.header)]
    )
    body = _node_result(node.body, f"{prefix}b", results, False, None)
    if body.parent is None:
        body.parent = header
    return body


def _group_result(group_id: str | None, members: list[EagerResult]) -> EagerResult:
    failed = next((member for member in members if member.state in _PROPAGATE_STATES), None)
    if failed is not None:
        return EagerResult(group_id, failed.result, failed.state, traceback=failed.traceback, children=members)
    if any(member.state != SUCCESS for member in members):
        return EagerResult(group_id, None, "PENDING", children=members)
    return EagerResult(group_id, [member.result for member in members], SUCCESS, children=members)
