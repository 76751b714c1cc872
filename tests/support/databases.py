"""Tests of what only PostgreSQL has (partitions, the compact layout, the
online migrations): skipped on SQLite."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.db import connection


def postgres_only(what: str) -> Callable[[], None]:
    """An autouse fixture that skips a module's tests unless the test database
    is PostgreSQL; bind it to a module-level name for pytest to find it."""

    @pytest.fixture(autouse=True)
    def _postgres_only() -> None:
        # Known only once the test database is set up (tests/conftest.py).
        if connection.vendor != "postgresql":
            pytest.skip(f"{what} (NOTIFY_TEST_DATABASE=postgres)")

    return _postgres_only
