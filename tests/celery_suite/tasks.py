"""Celery's ``t/integration/tasks.py``, registered under the same names (``t.integration.tasks.<name>``).

The bodies are Celery's. Redis, which Celery's suite uses to see side effects (``redis_echo``,
``redis_count``, ``redis_echo_group_id``), is replaced by :class:`RedisLikeStore`: the engine runs
in this process, so the tasks write to a thread-safe in-process store with the few redis commands
the suite uses, and the tests wait on its condition variable.
"""

import logging
import threading
import time
from collections.abc import Iterable
from time import sleep

from pydantic import BaseModel

from entrypoints.celery_compat import (
    Reject,
    Signature,
    SoftTimeLimitExceeded,
    Task,
    chain,
    chord,
    group,
    shared_task,
    signature,
    states,
)

# Stamping is a deliberate difference (README): without StampingVisitor the stamping tasks are not
# defined, exactly as Celery's own module does on Celery 4.
LEGACY_TASKS_DISABLED = True
try:
    from entrypoints.celery_compat import StampingVisitor
except ImportError:
    StampingVisitor = None
    LEGACY_TASKS_DISABLED = False

try:
    from entrypoints.celery_compat import UnpickleableExceptionWrapper
except ImportError:
    # Celery's tests accept either its wrapper or a plain exception naming the class and its args;
    # the engine has no wrapper type, so this one is never raised.
    class UnpickleableExceptionWrapper(Exception):
        exc_cls_name = ""
        exc_args = ()


class RedisLikeStore:
    """What Celery's suite keeps in redis, kept in this process: lists and counters by key.

    Values are stored as redis stores them (bytes; ``str`` encoded as UTF-8, numbers as their
    decimal text), so the tests keep Celery's expected ``b"..."`` values. Every change notifies
    :attr:`changed`, which the helpers in ``conftest.py`` wait on with a deadline.
    """

    def __init__(self):
        self.changed = threading.Condition()
        self._lists = {}
        self._counts = {}

    @staticmethod
    def _encode(value):
        if isinstance(value, bytes):
            return value
        if isinstance(value, str):
            return value.encode("utf-8")
        if isinstance(value, bool) or value is None or not isinstance(value, int | float):
            raise TypeError(
                f"Invalid input of type: {type(value).__name__!r}. Convert to a bytes, string, int or float first."
            )
        return str(value).encode("ascii")

    def reset(self):
        with self.changed:
            self._lists.clear()
            self._counts.clear()
            self.changed.notify_all()

    def rpush(self, key, *values):
        encoded = [self._encode(value) for value in values]
        with self.changed:
            items = self._lists.setdefault(key, [])
            items.extend(encoded)
            self.changed.notify_all()
            return len(items)

    def incr(self, key):
        with self.changed:
            self._counts[key] = self._counts.get(key, 0) + 1
            self.changed.notify_all()
            return self._counts[key]

    def get(self, key):
        with self.changed:
            count = self._counts.get(key)
            return None if count is None else str(count).encode("ascii")

    def delete(self, *keys):
        with self.changed:
            removed = 0
            for key in keys:
                removed += (self._lists.pop(key, None) is not None) + (self._counts.pop(key, None) is not None)
            self.changed.notify_all()
            return removed

    def exists(self, *keys):
        with self.changed:
            return sum(1 for key in keys if self._lists.get(key) or key in self._counts)

    def llen(self, key):
        with self.changed:
            return len(self._lists.get(key, ()))

    def lrange(self, key, start, end):
        with self.changed:
            items = self._lists.get(key, [])
            return list(items[start:] if end == -1 else items[start : end + 1])

    def blpop(self, key, timeout):
        """Pop the first element of ``key``, waiting up to ``timeout`` seconds; None on timeout.

        Unlike redis, a ``timeout`` of 0 does not block for ever: it checks once.
        """
        deadline = time.monotonic() + timeout
        with self.changed:
            while not self._lists.get(key):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self.changed.wait(remaining)
            value = self._lists[key].pop(0)
            if not self._lists[key]:
                del self._lists[key]
            return key.encode("utf-8"), value

    def wait_for(self, predicate, timeout):
        """Wait until ``predicate()`` holds (checked under the lock at every change); its last value."""
        with self.changed:
            return self.changed.wait_for(predicate, timeout)


REDIS = RedisLikeStore()


def get_redis_connection():
    return REDIS


logger = logging.getLogger(__name__)

# Celery's `pidbox_reset_error` remote-control command is left out: there is no broker and no
# remote control here (README differences: Broker and result-backend internals).


@shared_task(name="t.integration.tasks.identity")
def identity(x):
    """Return the argument."""
    return x


@shared_task(name="t.integration.tasks.add")
def add(x, y, z=None):
    """Add two or three numbers."""
    if z:
        return x + y + z
    else:
        return x + y


@shared_task(name="t.integration.tasks.mul")
def mul(x: int, y: int) -> int:
    """Multiply two numbers"""
    return x * y


@shared_task(name="t.integration.tasks.write_to_file_and_return_int")
def write_to_file_and_return_int(file_name, i):
    with open(file_name, mode="a", buffering=1) as file_handle:
        file_handle.write(str(i) + "\n")

    return i


@shared_task(name="t.integration.tasks.add_not_typed", typing=False)
def add_not_typed(x, y):
    """Add two numbers, but don't check arguments"""
    return x + y


@shared_task(name="t.integration.tasks.add_ignore_result", ignore_result=True)
def add_ignore_result(x, y):
    """Add two numbers."""
    return x + y


@shared_task(name="t.integration.tasks.raise_error")
def raise_error(*args):
    """Deliberately raise an error."""
    raise ValueError("deliberate error")


@shared_task(name="t.integration.tasks.chain_add")
def chain_add(x, y):
    (add.s(x, x) | add.s(y)).apply_async()


@shared_task(name="t.integration.tasks.chord_add")
def chord_add(x, y):
    chord(add.s(x, x), add.s(y)).apply_async()


@shared_task(name="t.integration.tasks.delayed_sum")
def delayed_sum(numbers, pause_time=1):
    """Sum the iterable of numbers."""
    # Allow the task to be in STARTED state for
    # a limited period of time.
    sleep(pause_time)
    return sum(numbers)


@shared_task(name="t.integration.tasks.delayed_sum_with_soft_guard")
def delayed_sum_with_soft_guard(numbers, pause_time=1):
    """Sum the iterable of numbers."""
    try:
        sleep(pause_time)
        return sum(numbers)
    except SoftTimeLimitExceeded:
        return 0


@shared_task(name="t.integration.tasks.tsum")
def tsum(nums):
    """Sum an iterable of numbers."""
    return sum(nums)


@shared_task(name="t.integration.tasks.xsum")
def xsum(nums):
    """Sum of ints and lists."""
    return sum(sum(num) if isinstance(num, Iterable) else num for num in nums)


@shared_task(name="t.integration.tasks.add_replaced", bind=True)
def add_replaced(self, x, y):
    """Add two numbers (via the add task)."""
    raise self.replace(add.s(x, y))


@shared_task(name="t.integration.tasks.replace_with_chain", bind=True)
def replace_with_chain(self, *args, link_msg=None):
    c = chain(identity.s(*args), identity.s())
    link_sig = redis_echo.s()
    if link_msg is not None:
        link_sig.args = (link_msg,)
        link_sig.set(immutable=True)
    c.link(link_sig)

    return self.replace(c)


@shared_task(name="t.integration.tasks.replace_with_chain_which_raises", bind=True)
def replace_with_chain_which_raises(self, *args, link_msg=None):
    c = chain(identity.s(*args), raise_error.s())
    link_sig = redis_echo.s()
    if link_msg is not None:
        link_sig.args = (link_msg,)
        link_sig.set(immutable=True)
    c.link_error(link_sig)

    return self.replace(c)


@shared_task(name="t.integration.tasks.replace_with_empty_chain", bind=True)
def replace_with_empty_chain(self, *_):
    return self.replace(chain())


@shared_task(name="t.integration.tasks.add_to_all", bind=True)
def add_to_all(self, nums, val):
    """Add the given value to all supplied numbers."""
    subtasks = [add.s(num, val) for num in nums]
    raise self.replace(group(*subtasks))


@shared_task(name="t.integration.tasks.add_to_all_to_chord", bind=True)
def add_to_all_to_chord(self, nums, val):
    for num in nums:
        self.add_to_chord(add.s(num, val))
    return 0


@shared_task(name="t.integration.tasks.add_chord_to_chord", bind=True)
def add_chord_to_chord(self, nums, val):
    subtasks = [add.s(num, val) for num in nums]
    self.add_to_chord(group(subtasks) | tsum.s())
    return 0


@shared_task(name="t.integration.tasks.print_unicode")
def print_unicode(log_message="håå®ƒ valmuefrø", print_message="hiöäüß"):
    """Task that both logs and print strings containing funny characters."""
    logger.warning(log_message)
    print(print_message)


@shared_task(name="t.integration.tasks.return_exception")
def return_exception(e):
    """Return a tuple containing the exception message and sentinel value."""
    return e, True


@shared_task(name="t.integration.tasks.sleeping")
def sleeping(i, **_):
    """Task sleeping for ``i`` seconds, and returning nothing."""
    sleep(i)


@shared_task(name="t.integration.tasks.ids", bind=True)
def ids(self, i):
    """Returns a tuple of ``root_id``, ``parent_id`` and
    the argument passed as ``i``."""
    return self.request.root_id, self.request.parent_id, i


@shared_task(name="t.integration.tasks.collect_ids", bind=True)
def collect_ids(self, res, i):
    """Used as a callback in a chain or group where the previous tasks
    are :task:`ids`: returns a tuple of::

        (previous_result, (root_id, parent_id, i))
    """
    return res, (self.request.root_id, self.request.parent_id, i)


@shared_task(name="t.integration.tasks.retry", bind=True, default_retry_delay=1)
def retry(self, return_value=None):
    """Task simulating multiple retries.

    When return_value is provided, the task after retries returns
    the result. Otherwise it fails.
    """
    if return_value:
        attempt = getattr(self, "attempt", 0)
        print("attempt", attempt)
        if attempt >= 3:
            delattr(self, "attempt")
            return return_value
        self.attempt = attempt + 1

    # Celery retries after countdown=5; 1 s keeps test_retry (3 retries, twice, per repository) short.
    raise self.retry(exc=ExpectedException(), countdown=1)


@shared_task(name="t.integration.tasks.retry_unpickleable", bind=True, default_retry_delay=1)
def retry_unpickleable(self, foo, bar, *, retry_kwargs):
    """Task that fails with an unpickleable exception and is retried."""
    raise self.retry(exc=UnpickleableException(foo, bar), **retry_kwargs)


@shared_task(name="t.integration.tasks.retry_once", bind=True, expires=120.0, max_retries=1)
def retry_once(self, *args, expires=None, max_retries=1, countdown=0.1):
    """Task that fails and is retried. Returns the number of retries."""
    if self.request.retries:
        return self.request.retries
    raise self.retry(countdown=countdown, expires=expires, max_retries=max_retries)


@shared_task(name="t.integration.tasks.retry_once_priority", bind=True, max_retries=1)
def retry_once_priority(self, *args, expires=60.0, max_retries=1, countdown=0.1):
    """Task that fails and is retried. Returns the priority."""
    if self.request.retries:
        return self.request.delivery_info["priority"]
    raise self.retry(countdown=countdown, max_retries=max_retries)


@shared_task(name="t.integration.tasks.retry_once_headers", bind=True, max_retries=1)
def retry_once_headers(self, *args, max_retries=1, countdown=0.1):
    """Task that fails and is retried. Returns headers."""
    if self.request.retries:
        return self.request.headers
    raise self.retry(countdown=countdown, max_retries=max_retries)


@shared_task(name="t.integration.tasks.redis_echo")
def redis_echo(message, redis_key="redis-echo"):
    """Task that appends the message to a redis list."""
    redis_connection = get_redis_connection()
    redis_connection.rpush(redis_key, message)


@shared_task(name="t.integration.tasks.redis_echo_group_id", bind=True)
def redis_echo_group_id(self, _, redis_key="redis-group-ids"):
    redis_connection = get_redis_connection()
    redis_connection.rpush(redis_key, self.request.group)


@shared_task(name="t.integration.tasks.redis_count")
def redis_count(redis_key="redis-count"):
    """Task that increments a specified or well-known redis key."""
    redis_connection = get_redis_connection()
    redis_connection.incr(redis_key)


@shared_task(name="t.integration.tasks.second_order_replace1", bind=True)
def second_order_replace1(self, state=False):
    redis_connection = get_redis_connection()
    if not state:
        redis_connection.rpush("redis-echo", "In A")
        new_task = chain(second_order_replace2.s(), second_order_replace1.si(state=True))
        raise self.replace(new_task)
    else:
        redis_connection.rpush("redis-echo", "Out A")


@shared_task(name="t.integration.tasks.second_order_replace2", bind=True)
def second_order_replace2(self, state=False):
    redis_connection = get_redis_connection()
    if not state:
        redis_connection.rpush("redis-echo", "In B")
        new_task = chain(redis_echo.s("In/Out C"), second_order_replace2.si(state=True))
        raise self.replace(new_task)
    else:
        redis_connection.rpush("redis-echo", "Out B")


@shared_task(name="t.integration.tasks.build_chain_inside_task", bind=True)
def build_chain_inside_task(self):
    """Task to build a chain.

    This task builds a chain and returns the chain's AsyncResult
    to verify that Asyncresults are correctly converted into
    serializable objects"""
    test_chain = add.s(1, 1) | add.s(2) | group(add.s(3), add.s(4)) | add.s(5)
    result = test_chain()
    return result


class ExpectedException(Exception):
    """Sentinel exception for tests."""

    def __eq__(self, other):
        return other is not None and isinstance(other, ExpectedException) and self.args == other.args

    def __hash__(self):
        return hash(self.args)


class UnpickleableException(Exception):
    """Exception that doesn't survive a pickling roundtrip (dump + load)."""

    def __init__(self, foo, bar=None):
        if bar is None:
            # We define bar with a default value in the signature so that
            # it's easier to add a break point here to find out when the
            # exception is being unpickled.
            raise TypeError("bar must be provided")

        super().__init__(foo)
        self.bar = bar


@shared_task(name="t.integration.tasks.fail")
def fail(*args):
    """Task that simply raises ExpectedException."""
    args = ("Task expected to fail", *args)
    raise ExpectedException(*args)


@shared_task(name="t.integration.tasks.fail_unpickleable")
def fail_unpickleable(foo, bar):
    """Task that raises an unpickleable exception."""
    raise UnpickleableException(foo, bar)


@shared_task(name="t.integration.tasks.fail_replaced", bind=True)
def fail_replaced(self, *args):
    """Replace this task with one which raises ExpectedException."""
    raise self.replace(fail.si(*args))


@shared_task(name="t.integration.tasks.return_priority", bind=True)
def return_priority(self, *_args):
    return "Priority: %s" % self.request.delivery_info["priority"]


@shared_task(name="t.integration.tasks.return_properties", bind=True)
def return_properties(self):
    return self.request.properties


class ClassBasedAutoRetryTask(Task):
    name = "auto_retry_class_task"
    autoretry_for = (ValueError,)
    retry_kwargs = {"max_retries": 1}
    retry_backoff = True

    def run(self):
        if self.request.retries:
            return self.request.retries
        raise ValueError()


# The signatures returned by these tasks wouldn't actually run because the
# arguments wouldn't be fulfilled - we never actually delay them so it's fine
@shared_task(name="t.integration.tasks.return_nested_signature_chain_chain")
def return_nested_signature_chain_chain():
    return chain(chain([add.s()]))


@shared_task(name="t.integration.tasks.return_nested_signature_chain_group")
def return_nested_signature_chain_group():
    return chain(group([add.s()]))


@shared_task(name="t.integration.tasks.return_nested_signature_chain_chord")
def return_nested_signature_chain_chord():
    return chain(chord([add.s()], add.s()))


@shared_task(name="t.integration.tasks.return_nested_signature_group_chain")
def return_nested_signature_group_chain():
    return group(chain([add.s()]))


@shared_task(name="t.integration.tasks.return_nested_signature_group_group")
def return_nested_signature_group_group():
    return group(group([add.s()]))


@shared_task(name="t.integration.tasks.return_nested_signature_group_chord")
def return_nested_signature_group_chord():
    return group(chord([add.s()], add.s()))


@shared_task(name="t.integration.tasks.return_nested_signature_chord_chain")
def return_nested_signature_chord_chain():
    return chord(chain([add.s()]), add.s())


@shared_task(name="t.integration.tasks.return_nested_signature_chord_group")
def return_nested_signature_chord_group():
    return chord(group([add.s()]), add.s())


@shared_task(name="t.integration.tasks.return_nested_signature_chord_chord")
def return_nested_signature_chord_chord():
    return chord(chord([add.s()], add.s()), add.s())


@shared_task(name="t.integration.tasks.rebuild_signature")
def rebuild_signature(sig_dict):
    sig_obj = Signature.from_dict(sig_dict)

    def _recurse(sig):
        if not isinstance(sig, Signature):
            raise TypeError(f"{sig!r} is not a signature object")
        # Most canvas types have a `tasks` attribute
        if isinstance(sig, (chain, group, chord)):
            for task in sig.tasks:
                _recurse(task)
        # `chord`s also have a `body` attribute
        if isinstance(sig, chord):
            _recurse(sig.body)

    _recurse(sig_obj)


@shared_task(name="t.integration.tasks.errback_old_style")
def errback_old_style(request_id):
    redis_count(request_id)
    return request_id


@shared_task(name="t.integration.tasks.errback_new_style")
def errback_new_style(request, exc, tb):
    redis_count(request.id)
    return request.id


@shared_task(name="t.integration.tasks.replaced_with_me")
def replaced_with_me():
    return True


class AddParameterModel(BaseModel):
    x: int
    y: int


class AddResultModel(BaseModel):
    result: int


@shared_task(name="t.integration.tasks.add_pydantic", pydantic=True)
def add_pydantic(data: AddParameterModel) -> AddResultModel:
    """Add two numbers, but with parameters and results using Pydantic model serialization."""
    value = data.x + data.y
    return AddResultModel(result=value)


@shared_task(name="t.integration.tasks.add_pydantic_string_annotations", pydantic=True)
def add_pydantic_string_annotations(data: "AddParameterModel") -> "AddResultModel":
    """Add two numbers, but with string-annotated Pydantic models (__future__.annotations bug)."""
    value = data.x + data.y
    return AddResultModel(result=value)


if LEGACY_TASKS_DISABLED:

    class StampOnReplace(StampingVisitor):
        stamp = {"StampOnReplace": "This is the replaced task"}

        def on_signature(self, sig, **headers) -> dict:
            return self.stamp

    class StampedTaskOnReplace(Task):
        """Custom task for stamping on replace"""

        def on_replace(self, sig):
            sig.stamp(StampOnReplace())
            return super().on_replace(sig)

    @shared_task(name="t.integration.tasks.replace_with_stamped_task", bind=True, base=StampedTaskOnReplace)
    def replace_with_stamped_task(self: StampedTaskOnReplace, replace_with=None):
        if replace_with is None:
            replace_with = replaced_with_me.s()
        self.replace(signature(replace_with))


@shared_task(name="t.integration.tasks.store_success_then_reject", bind=True, acks_late=True)
def store_success_then_reject(self):
    """First delivery: store SUCCESS manually, then Reject to trigger redelivery.
    Second delivery: dedup finds SUCCESS, dispatches chain."""
    if not self.request.delivery_info.get("redelivered"):
        self.backend.store_result(self.request.id, "first-pass", states.SUCCESS)
        raise Reject(requeue=True)
    # When dedup is enabled the fast-path intercepts before reaching here,
    # so 'dedup-pass' is only returned when dedup is disabled.
    return "dedup-pass"


@shared_task(name="t.integration.tasks.reject_then_succeed", bind=True, acks_late=True)
def reject_then_succeed(self):
    """First delivery: Reject(requeue=True). Second delivery: succeed normally."""
    if not self.request.delivery_info.get("redelivered"):
        raise Reject(requeue=True)
    return "second-pass"


@shared_task(name="t.integration.tasks.reject_without_requeue")
def reject_without_requeue():
    """Reject permanently so the worker records a terminal FAILURE."""
    raise Reject("rejected", requeue=False)


@shared_task(name="t.integration.tasks.soft_time_limit_must_exceed_time_limit", soft_time_limit=2, time_limit=1)
def soft_time_limit_must_exceed_time_limit():
    pass


@shared_task(name="t.integration.tasks.return_request_time_limits", bind=True)
def return_request_time_limits(self):
    """Return time_limit and soft_time_limit from the task request context."""
    return {
        "time_limit": self.request.time_limit,
        "soft_time_limit": self.request.soft_time_limit,
    }


@shared_task(name="t.integration.tasks.task_with_declared_time_limits", bind=True, time_limit=60, soft_time_limit=45)
def task_with_declared_time_limits(self):
    """Task with explicitly declared time limits — verifies request fields are set."""
    return {
        "time_limit": self.request.time_limit,
        "soft_time_limit": self.request.soft_time_limit,
    }
