"""Celery's task signals (``celery.signals``): in-process callbacks around each task run.

    from entrypoints.celery_compat import signals

    @signals.task_failure.connect
    def report(sender=None, task_id=None, exception=None, **kwargs): ...

They are sent in the process that runs the task, with Celery's arguments: ``task_prerun``,
``task_postrun``, ``task_success``, ``task_failure`` and ``task_retry`` in the task's own thread (or
on its event loop, for an ``async def`` task) around the call, also for eager runs (``.apply()``);
``task_revoked`` (and ``task_failure`` for a failure the task's code did not raise: a hard time
limit, a lost worker) from the engine's event loop, once the job's new state is stored;
``task_received`` (``request=`` the job's request, with ``replaced_task_nesting``) when the engine
has taken a job and it is about to run, before ``task_prerun``, in the task's thread (or on its
loop) but outside the job's context (as Celery's consumer sends it, not as the task): not for an
eager run, nor for a job revoked unrun.
``before_task_publish`` / ``after_task_publish`` are sent in the caller when it submits a job.

A receiver's exception is logged and returned in :meth:`Signal.send`'s answer, never raised, as in
Celery.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import traceback as tb_module
import weakref
from collections.abc import Callable, Hashable
from types import TracebackType
from typing import Any

log = logging.getLogger(__name__)

Receiver = Callable[..., Any]


def _make_id(target: Any) -> Hashable:
    if isinstance(target, (bytes, str)):
        return target
    if hasattr(target, "__func__"):
        return id(target.__func__)
    return id(target)


_NONE_ID = _make_id(None)


class Signal:
    """Celery's ``Signal``: ``connect`` receivers (for every sender, or one), ``send`` to them.

    Receivers are called as ``receiver(signal=signal, sender=sender, **named)`` and must accept
    keyword arguments. As in Celery, receivers are held by weak reference unless ``weak=False`` (a
    receiver defined inside a function lives as long as something else refers to it), and a second
    ``connect`` of the same receiver (or ``dispatch_uid``) for the same sender is ignored.
    """

    def __init__(self, name: str | None = None, providing_args: Any = None) -> None:
        self.name = name
        self.providing_args = set(providing_args or ())
        self.receivers: list[tuple[tuple[Hashable, Hashable], Any]] = []
        self.lock = threading.Lock()
        self._dead = False

    def __repr__(self) -> str:
        return f"<Signal: {self.name}>"

    def connect(self, *args: Any, **kwargs: Any) -> Any:
        """``sig.connect(receiver, sender=None, weak=True, dispatch_uid=None)``; usable as a decorator,
        bare (``@sig.connect``) or with options (``@sig.connect(sender=add)``)."""
        if args and callable(args[0]):
            return self._connect_options(*args[1:], **kwargs)(args[0])
        if "receiver" in kwargs:
            receiver = kwargs.pop("receiver")
            return self._connect_options(*args, **kwargs)(receiver)
        return self._connect_options(*args, **kwargs)

    def _connect_options(
        self, sender: Any = None, weak: bool = True, dispatch_uid: Hashable | None = None, retry: bool = False
    ) -> Callable[[Receiver], Receiver]:
        if retry:
            raise TypeError("connect(retry=True) is not supported: receivers are called once")

        def connect_receiver(receiver: Receiver) -> Receiver:
            self._connect(receiver, sender, weak, dispatch_uid)
            return receiver

        return connect_receiver

    def _connect(self, receiver: Receiver, sender: Any, weak: bool, dispatch_uid: Hashable | None) -> None:
        if not callable(receiver):
            raise TypeError("Signal receivers must be callable")
        if not _accepts_kwargs(receiver):
            raise ValueError("Signal receiver must accept keyword arguments.")
        key = (dispatch_uid if dispatch_uid else _make_id(receiver), _make_id(sender))
        held: Any = receiver
        if weak:
            if hasattr(receiver, "__self__") and hasattr(receiver, "__func__"):
                held = weakref.WeakMethod(receiver)
                weakref.finalize(receiver.__self__, self._mark_dead)
            else:
                held = weakref.ref(receiver)
                weakref.finalize(receiver, self._mark_dead)
        with self.lock:
            self._clear_dead()
            if all(existing != key for existing, _ in self.receivers):
                self.receivers.append((key, held))

    def disconnect(
        self,
        receiver: Receiver | None = None,
        sender: Any = None,
        weak: Any = None,
        dispatch_uid: Hashable | None = None,
    ) -> bool:
        """Disconnect a receiver (or ``dispatch_uid``) from ``sender``; True if it was connected."""
        key = (dispatch_uid if dispatch_uid else _make_id(receiver), _make_id(sender))
        with self.lock:
            self._clear_dead()
            for index, (existing, _) in enumerate(self.receivers):
                if existing == key:
                    del self.receivers[index]
                    return True
        return False

    def has_listeners(self, sender: Any = None) -> bool:
        return bool(self._live_receivers(sender))

    def send(self, sender: Any, **named: Any) -> list[tuple[Receiver, Any]]:
        """Call every receiver connected for ``sender`` (or for any sender); their answers in order.

        A receiver's exception is logged and stands as its answer; it is never raised.
        """
        if not self.receivers:
            return []
        responses: list[tuple[Receiver, Any]] = []
        for receiver in self._live_receivers(sender):
            try:
                response = receiver(signal=self, sender=sender, **named)
            except Exception as exc:
                log.exception("Signal handler %r raised: %r", receiver, exc)
                responses.append((receiver, exc))
            else:
                responses.append((receiver, response))
        return responses

    send_robust = send

    def _live_receivers(self, sender: Any) -> list[Receiver]:
        sender_key = _make_id(sender)
        with self.lock:
            self._clear_dead()
            held = [r for (_, r_sender), r in self.receivers if r_sender in (_NONE_ID, sender_key)]
        live: list[Receiver] = []
        for receiver in held:
            if isinstance(receiver, weakref.ReferenceType):
                receiver = receiver()
                if receiver is None:
                    continue
            live.append(receiver)
        return live

    def _mark_dead(self) -> None:
        self._dead = True

    def _clear_dead(self) -> None:
        if self._dead:
            self._dead = False
            self.receivers = [
                (key, r) for key, r in self.receivers if not (isinstance(r, weakref.ReferenceType) and r() is None)
            ]


def _accepts_kwargs(fn: Callable[..., Any]) -> bool:
    import inspect

    try:
        parameters = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return True
    return any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)


class ExceptionInfo:
    """Celery's ``einfo`` (billiard's ``ExceptionInfo``): the exception, its type, traceback object
    and text. ``str(einfo)`` is the traceback text."""

    def __init__(self, exc: BaseException, tb: TracebackType | None = None) -> None:
        self.exception = exc
        self.type = type(exc)
        self.tb = tb if tb is not None else exc.__traceback__
        self.traceback = "".join(tb_module.format_exception(self.type, exc, self.tb))
        self.internal = False

    @property
    def exc_info(self) -> tuple[type[BaseException], BaseException, TracebackType | None]:
        return (self.type, self.exception, self.tb)

    def __str__(self) -> str:
        return self.traceback

    def __repr__(self) -> str:
        return f"<ExceptionInfo: {self.exception!r}>"


def exception_info(exc: BaseException) -> ExceptionInfo:
    current = sys.exc_info()
    return ExceptionInfo(exc, current[2] if current[1] is exc else exc.__traceback__)


task_prerun = Signal(name="task_prerun", providing_args={"task_id", "task", "args", "kwargs"})
task_postrun = Signal(name="task_postrun", providing_args={"task_id", "task", "args", "kwargs", "retval", "state"})
task_success = Signal(name="task_success", providing_args={"result"})
task_failure = Signal(
    name="task_failure", providing_args={"task_id", "exception", "args", "kwargs", "traceback", "einfo"}
)
task_retry = Signal(name="task_retry", providing_args={"request", "reason", "einfo"})
task_revoked = Signal(name="task_revoked", providing_args={"request", "terminated", "signum", "expired"})
task_received = Signal(name="task_received", providing_args={"request"})
before_task_publish = Signal(
    name="before_task_publish",
    providing_args={"body", "exchange", "routing_key", "headers", "properties", "declare", "retry_policy"},
)
after_task_publish = Signal(name="after_task_publish", providing_args={"body", "exchange", "routing_key"})

TASK_SIGNALS = (task_prerun, task_postrun, task_success, task_failure, task_retry, task_received)
"""The signals sent around a task's call (the ones :func:`any_task_receivers` looks at)."""


def any_task_receivers() -> bool:
    """Whether any receiver is connected to a signal sent around a task's call (a cheap check)."""
    return any(signal.receivers for signal in TASK_SIGNALS)


# -- the engine's side: revocations, and failures the task's code did not raise ---------------------

#: Failures the task's code cannot have raised (its call was stopped from outside, or never ended).
_OUTSIDE_FAILURES = frozenset({"TimeLimitExceeded", "WorkerLostError"})

interrupted: set[str] = set()
"""Ids of async jobs cancelled from outside while they ran (a time limit): their failure, once
stored, is sent from the engine's loop."""


class EngineSignals:
    """Sends ``task_revoked``, and ``task_failure`` for failures the task's code did not raise, from
    one engine's event bus (see :func:`watch`)."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self._pending: set[asyncio.Future[None]] = set()

    def on_event(self, event: Any) -> None:
        if event.kind != "job" or not event.terminal:
            return
        was_interrupted = event.id in interrupted
        interrupted.discard(event.id)
        if event.state == "REVOKED":
            if task_revoked.receivers:
                self._later(self._send_revoked(event))
        elif (
            event.state == "FAILURE"
            and event.error is not None
            and (was_interrupted or event.error.type in _OUTSIDE_FAILURES)
            and task_failure.receivers
        ):
            self._later(self._send_failure(event))

    def _later(self, coroutine: Any) -> None:
        try:
            future = asyncio.ensure_future(coroutine)
        except RuntimeError:  # no loop (an event published off the loop): nothing to send from
            coroutine.close()
            return
        self._pending.add(future)
        future.add_done_callback(self._pending.discard)

    async def _job(self, job_id: str) -> Any:
        try:
            return await self.engine.jobs.get(job_id)
        except Exception:
            return None

    async def _send_revoked(self, event: Any) -> None:
        from entrypoints.compat.tasks import request_of, task_named

        job = await self._job(event.id)
        task = task_named(event.task)
        if job is None or task is None:
            return
        expired = event.error is not None and event.error.message.endswith("expired")
        task_revoked.send(
            sender=task,
            request=request_of(job),
            terminated=event.started_at is not None and not expired,
            signum=None,
            expired=expired,
        )

    async def _send_failure(self, event: Any) -> None:
        from entrypoints.compat.exceptions import exception_from
        from entrypoints.compat.tasks import task_named

        job = await self._job(event.id)
        task = task_named(event.task)
        if job is None or task is None:
            return
        exc = exception_from(event.error)
        task_failure.send(
            sender=task,
            task_id=job.id,
            exception=exc,
            args=job.args,
            kwargs=job.kwargs,
            traceback=None,
            einfo=ExceptionInfo(exc),
        )


_watched: weakref.WeakKeyDictionary[Any, EngineSignals] = weakref.WeakKeyDictionary()


def watch(engine: Any) -> EngineSignals:
    """Send the engine-side signals of ``engine`` and log Celery's worker lines for its jobs (see
    :mod:`entrypoints.compat.trace`) and the ``geekblog.jobs`` line of each job
    (:mod:`entrypoints.job_log`); idempotent. Done where an engine is built for Python task code
    (the container, so the service and ``embedded_engine`` alike)."""
    watcher = _watched.get(engine)
    if watcher is None:
        from entrypoints.compat.trace import CeleryTrace
        from entrypoints.job_log import JobLog, Traces

        watcher = EngineSignals(engine)
        _watched[engine] = watcher
        engine.bus.add_listener(watcher.on_event)
        engine.dispatcher.trace = Traces([CeleryTrace(), JobLog()])
        engine.jobs.trace = engine.dispatcher.trace
    return watcher


def watcher_of(engine: Any) -> EngineSignals | None:
    return _watched.get(engine)
