"""What replaces Celery's worker, ``manager`` and redis in its integration suite.

Every test gets an engine of its own (``embedded_engine``), parametrised over the repositories
(memory, SQLite on a fresh file, PostgreSQL on the run's database emptied first), running in its
own event loop on a background thread: the test bodies are synchronous, like Celery's, so
``.delay()``, ``canvas()`` and ``.get()`` block and return values. A watchdog stops the engine of
a test that runs past :data:`TEST_DEADLINE`, which releases a ``get()`` without a timeout (it
raises ``EngineStopped``) instead of stalling the run.

The redis helpers wait on the condition of :class:`tests.celery_suite.tasks.RedisLikeStore`, with a
deadline; "no more messages arrive" is checked for :data:`QUIET` seconds (Celery blocks 1 s).
"""

import asyncio
import collections
import contextlib
import inspect
import logging
import re
import threading
import time

import pytest

from entrypoints.celery_compat import ResultSet, current_app, embedded_engine
from entrypoints.celery_compat import TimeoutError as CeleryTimeoutError
from entrypoints.compat import binding
from tests.celery_suite.tasks import get_redis_connection
from tests.support.postgres import empty_tables_blocking

TIMEOUT = 10
#: How long the helpers check that nothing more arrives (Celery: 1 s each time).
QUIET = 0.2
#: A test still running after this long has its engine stopped, which fails it (and frees its waits).
TEST_DEADLINE = 45.0
#: Enough for the suite's groups to run in parallel (Celery's test worker has one process).
MAX_CONCURRENT_TASKS = 16


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "max_concurrent_tasks(n): the test's engine runs at most n tasks at once (default 16)",
    )


def pytest_pycollect_makeitem(collector, name, obj):
    """Collect Celery's lower-case ``class test_chain:`` classes, as Celery's ``python_classes`` does."""
    if isinstance(collector, pytest.Module) and inspect.isclass(obj) and name.startswith("test_"):
        return pytest.Class.from_parent(collector, name=name, obj=obj)
    return None


class EngineThread:
    """An ``embedded_engine`` in its own event loop on a background thread, until :meth:`stop`."""

    def __init__(self, db_path, max_concurrent_tasks, deadline, database_url=None):
        self.db_path = db_path
        self.database_url = database_url
        self.max_concurrent_tasks = max_concurrent_tasks
        self.deadline = deadline
        self.engine = None
        self.loop = None
        self.error = None
        self.watchdog_fired = False
        self._ready = threading.Event()
        self._stopping = None
        self._thread = threading.Thread(target=self._run, name="celery-suite-engine", daemon=True)

    def start(self):
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("the engine did not start within 30 s")
        if self.error is not None:
            raise self.error

    def stop(self):
        loop = self.loop
        if loop is not None and self._stopping is not None:
            with contextlib.suppress(RuntimeError):  # the loop has already closed
                loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join(30)
        if self._thread.is_alive():
            raise RuntimeError("the engine thread did not stop within 30 s")
        if self.error is not None:
            raise self.error

    def _run(self):
        try:
            asyncio.run(self._main())
        except BaseException as exc:
            self.error = exc
        finally:
            self._ready.set()

    async def _main(self):
        self.loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        async with embedded_engine(
            db_path=self.db_path,
            task_modules=["tests.celery_suite.tasks"],
            max_concurrent_tasks=self.max_concurrent_tasks,
            database_url=self.database_url,
        ) as engine:
            self.engine = engine
            self._ready.set()
            try:
                await asyncio.wait_for(self._stopping.wait(), self.deadline)
            except TimeoutError:
                self.watchdog_fired = True


@pytest.fixture(params=["memory", "sqlite", "postgres"], autouse=True)
def celery_session_worker(request, tmp_path):
    """The engine every test of the suite runs on (Celery's session worker), per repository."""
    marker = request.node.get_closest_marker("max_concurrent_tasks")
    concurrency = marker.args[0] if marker is not None else MAX_CONCURRENT_TASKS
    db_path = str(tmp_path / "celery-suite.db") if request.param == "sqlite" else None
    database_url = request.getfixturevalue("postgres_url") if request.param == "postgres" else None
    if database_url is not None:
        empty_tables_blocking(database_url)
    get_redis_connection().reset()
    # Celery's test worker logs at the level it is given (the suite reads its INFO lines): the engine
    # writes the same lines on the same loggers (entrypoints.compat.trace).
    celery_logger = logging.getLogger("celery")
    level = celery_logger.level
    celery_logger.setLevel(logging.INFO)
    running = EngineThread(db_path, concurrency, TEST_DEADLINE, database_url)
    running.start()
    try:
        yield running.engine
    finally:
        running.stop()
        celery_logger.setLevel(level)
    if running.watchdog_fired:
        pytest.fail(f"the test ran past {TEST_DEADLINE} s: the watchdog stopped its engine")


#: Settings Celery's tests change on the app and do not set back: restored after every test.
_APP_CONF_KEYS = ("task_always_eager", "task_allow_error_cb_on_chord_header")


@pytest.fixture(autouse=True)
def _restore_app_conf():
    conf = getattr(current_app, "conf", None)
    saved = {key: getattr(conf, key) for key in _APP_CONF_KEYS if conf is not None and hasattr(conf, key)}
    yield
    for key, value in saved.items():
        setattr(conf, key, value)


class Manager:
    """Celery's ``celery.contrib.testing.manager.Manager``, for what the suite uses of it."""

    def __init__(self, engine):
        self.engine = engine

    @property
    def app(self):
        return current_app

    def assert_accepted(self, ids, interval=0.05, timeout=10.0, **policy):
        """Celery's check that a worker took each task (active or reserved): here, that the engine
        started its job (or already finished it), polled with a deadline."""
        deadline = time.monotonic() + timeout
        while True:
            jobs = [binding.bridge().peek(ident) for ident in ids]
            if all(job.started_at is not None or job.state in ("STARTED", "SUCCESS", "FAILURE") for job in jobs):
                return True
            if time.monotonic() > deadline:
                raise AssertionError(f"not accepted within {timeout} s: {[j.id for j in jobs if j.started_at is None]}")
            time.sleep(interval)

    def join(self, r, propagate=False, max_retries=10, **kwargs):
        if not isinstance(r, ResultSet):
            r = ResultSet([r])
        return r.get(propagate=propagate, **kwargs)


@pytest.fixture
def manager(celery_session_worker):
    return Manager(celery_session_worker)


@pytest.fixture
def celery_session_app(celery_session_worker):
    return current_app


class SubTests:
    """``pytest-subtests``' fixture, reduced: a failing block fails the test, its message noted."""

    @contextlib.contextmanager
    def test(self, msg=None, **kwargs):
        try:
            yield
        except BaseException as exc:
            exc.add_note(f"in subtest: {msg} {kwargs or ''}".rstrip())
            raise


@pytest.fixture
def subtests():
    return SubTests()


def await_redis_echo(expected_msgs, redis_key="redis-echo", timeout=TIMEOUT):
    """
    Helper to wait for a specified or well-known redis key to contain a string.
    """
    redis_connection = get_redis_connection()

    if isinstance(expected_msgs, str | bytes | bytearray):
        expected_msgs = (expected_msgs,)
    expected_msgs = collections.Counter(e if not isinstance(e, str) else e.encode("utf-8") for e in expected_msgs)

    # This can technically wait for `len(expected_msg_or_msgs) * timeout` :/
    while +expected_msgs:
        maybe_key_msg = redis_connection.blpop(redis_key, timeout)
        if maybe_key_msg is None:
            raise CeleryTimeoutError(f"Fetching from {redis_key!r} timed out - still awaiting {dict(+expected_msgs)!r}")
        retrieved_key, msg = maybe_key_msg
        assert retrieved_key.decode("utf-8") == redis_key
        expected_msgs[msg] -= 1  # silently accepts unexpected messages

    # There should be no more elements - block momentarily
    assert redis_connection.blpop(redis_key, min(QUIET, timeout)) is None


def await_redis_list_message_length(expected_length, redis_key="redis-group-ids", timeout=TIMEOUT):
    """
    Helper to wait for a specified or well-known redis key to contain a string.
    """
    redis_connection = get_redis_connection()

    if not redis_connection.wait_for(lambda: redis_connection.llen(redis_key) == expected_length, timeout):
        length = redis_connection.llen(redis_key)
        raise CeleryTimeoutError(
            f"{redis_key!r} has length of {length}, but expected to be of length {expected_length}"
        )

    # No more elements arrive - wait momentarily for one
    redis_connection.wait_for(lambda: redis_connection.llen(redis_key) != expected_length, min(QUIET, timeout))
    assert redis_connection.llen(redis_key) == expected_length


def await_redis_count(expected_count, redis_key="redis-count", timeout=TIMEOUT):
    """
    Helper to wait for a specified or well-known redis key to count to a value.
    """
    redis_connection = get_redis_connection()

    def count():
        maybe_count = redis_connection.get(redis_key)
        # It's either `None` or a base-10 integer
        return None if maybe_count is None else int(maybe_count)

    if not redis_connection.wait_for(lambda: count() == expected_count, timeout):
        if count() is None:
            raise CeleryTimeoutError(f"{redis_key!r} was never incremented")
        assert count() == expected_count

    # There should be no more increments - wait momentarily for one
    redis_connection.wait_for(lambda: count() != expected_count, min(QUIET, timeout))
    assert int(redis_connection.get(redis_key)) == expected_count


def check_for_logs(caplog, message: str, max_wait: float = QUIET, interval: float = 0.05) -> bool:
    """Whether a record matching ``message`` is logged within ``max_wait`` seconds (Celery: 1 s)."""
    start_time = time.monotonic()
    while time.monotonic() - start_time < max_wait:
        if any(re.search(message, record.message) for record in caplog.records):
            return True
        time.sleep(interval)
    return False


def wait_until(predicate, timeout, interval=0.02):
    """Poll ``predicate`` until it holds or ``timeout`` seconds pass; its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)
