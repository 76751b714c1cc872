"""The suite runs twice in `make test`: on SQLite, then on PostgreSQL. This
checks the run is on the backend it claims, so a broken switch cannot pass
silently."""

import os

import pytest
from django.db import connection


@pytest.mark.django_db
def test_runs_on_the_requested_backend() -> None:
    wanted = os.environ.get("NOTIFY_TEST_DATABASE", "sqlite")
    expected = {"sqlite": "sqlite", "postgres": "postgresql"}[wanted]
    assert connection.vendor == expected
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        assert cursor.fetchone() == (1,)
