"""Fixtures every suite may use: a PostgreSQL database of this run's own."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.postgres import create_database, drop_database


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh database for the whole run (``gb_test_<random>``), dropped at the end; tests that use it
    empty its tables first (``tests.support.postgres.empty_tables``)."""
    url = create_database()
    try:
        yield url
    finally:
        drop_database(url)
