"""Celery's own integration suites (t/integration/test_canvas.py, test_tasks.py), run on this engine.

The tests keep Celery's names, structure and expected values; ``conftest.py`` replaces Celery's
worker and ``manager`` with an embedded engine on a background thread, over memory and SQLite,
and ``tasks.py`` is Celery's ``t/integration/tasks.py`` with redis replaced by an in-process store.
"""
