"""notifications.db: the publish writer's kept connection (real database)."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import DatabaseError, connection

from notifications import db

pytestmark = pytest.mark.django_db(transaction=True)


def _query() -> Any:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        assert cursor.fetchone() == (1,)
    return connection.connection


def _broken() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM no_such_table")


def test_the_connection_is_kept_between_calls() -> None:
    run = db.with_kept_connection(_query)
    first = run()
    assert connection.connection is first  # not handed back to the pool
    assert run() is first


def test_an_error_drops_the_connection_and_the_next_call_gets_a_new_one() -> None:
    kept = db.with_kept_connection(_query)()
    with pytest.raises(DatabaseError):
        db.with_kept_connection(_broken)()
    if connection.vendor == "postgresql":  # Django never closes an in-memory SQLite
        assert connection.connection is None
    again = db.with_kept_connection(_query)()
    assert again is not None
    assert again is not kept or connection.vendor != "postgresql"


def test_a_connection_past_its_age_is_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    if connection.settings_dict["CONN_MAX_AGE"] is None:
        pytest.skip("connections without an age (SQLite) are kept as Django keeps them")
    monkeypatch.setattr(db, "KEPT_CONNECTION_AGE", 0.0)
    db.with_kept_connection(_query)()
    assert connection.connection is None
