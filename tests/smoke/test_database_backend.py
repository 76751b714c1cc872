"""The suite runs three times in `make test`: on SQLite, on PostgreSQL, and on
PostgreSQL through PgBouncer. This checks the run is on the backend it claims,
so a broken switch cannot pass silently."""

import os

import pytest
from django.db import connection


@pytest.mark.django_db
def test_runs_on_the_requested_backend(request: pytest.FixtureRequest) -> None:
    wanted = os.environ.get("NOTIFY_TEST_DATABASE", "sqlite")
    expected = {"sqlite": "sqlite", "postgres": "postgresql", "pgbouncer": "postgresql"}[wanted]
    assert connection.vendor == expected
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        assert cursor.fetchone() == (1,)
    if wanted in ("postgres", "pgbouncer"):
        # PgBouncer hands each transaction a server connection of its pool
        # and answers on its own port; PostgreSQL's port is the server's.
        bouncer = request.getfixturevalue("pgbouncer") if wanted == "pgbouncer" else None
        server = request.getfixturevalue("postgres_server")
        port = int(connection.settings_dict["PORT"])
        assert port == (bouncer.port if bouncer is not None else server.port)
