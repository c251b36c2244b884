"""Pieces of the Celery-compatible API; import them from :mod:`entrypoints.celery_compat`."""
