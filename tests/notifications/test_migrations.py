"""Migrations 0002-0004: rows of the one-table schema (content on every
recipient row) end up as events + recipient rows, ids, read state and
content preserved, and the resumable backfill copies only what is missing."""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection

from notifications import services
from notifications.models import Notification, NotificationEvent
from notifications.selectors import notifications_after
from tests.support import rows as stored_rows
from tests.support.migrations import latest, migrate, migrated_to

pytestmark = pytest.mark.django_db(transaction=True)

OLD = [("notifications", "0001_initial")]
EXPANDED = [("notifications", "0002_event_and_recipient")]
CONTRACTED_BEFORE = [("notifications", "0003_copy_legacy_rows")]
T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def old_schema() -> Iterator[None]:
    with migrated_to(OLD):
        yield


def legacy_insert(rows: list[dict[str, Any]]) -> None:
    """Rows as the old code wrote them (its own INSERT, with the old columns)."""
    with connection.cursor() as cursor:
        for row in rows:
            cursor.execute(
                "INSERT INTO notify_notification (user_id, seq, event_id, type, title, body, "
                "data, source, created_at, read_at) "
                f"VALUES ({', '.join(['%s'] * 10)})",
                [
                    row["user_id"],
                    row["seq"],
                    row["event_id"].hex if connection.vendor == "sqlite" else row["event_id"],
                    row["type"],
                    row["title"],
                    row["body"],
                    row["data"],
                    row["source"],
                    row["created_at"],
                    row["read_at"],
                ],
            )


def legacy_rows(count: int, *, first_seq: int = 1) -> list[dict[str, Any]]:
    """``count`` publishes, each to alice and bob, with distinct content."""
    rows: list[dict[str, Any]] = []
    for i in range(count):
        event = uuid.uuid4()
        for user in ("alice", "bob"):
            seq = first_seq + i
            rows.append(
                {
                    "user_id": user,
                    "seq": seq,
                    "event_id": event,
                    "type": f"t.{i}",
                    "title": f"title {i} \u00e9\t\\",
                    "body": f"body {i}\n",
                    "data": f'{{"i": {i}, "nested": {{"k": [1, "x"]}}}}',
                    "source": "shop",
                    "created_at": T0 + timedelta(minutes=i),
                    "read_at": T0 + timedelta(hours=1) if user == "alice" and i % 2 else None,
                }
            )
    return rows


def test_old_rows_become_events_and_recipient_rows(old_schema: None) -> None:
    legacy_insert(legacy_rows(7))
    migrate(latest())

    assert NotificationEvent.objects.count() == 7  # content once per publish
    assert stored_rows.count() == 14
    for user in ("alice", "bob"):
        replay = notifications_after(user_id=user, after=0)
        assert [n["id"] for n in replay] == [str(i) for i in range(1, 8)]
        for i, n in enumerate(replay):
            assert (n["type"], n["title"], n["body"], n["source"]) == (
                f"t.{i}",
                f"title {i} \u00e9\t\\",
                f"body {i}\n",
                "shop",
            )
            assert n["data"] == {"i": i, "nested": {"k": [1, "x"]}}
            assert n["created_at"] == (T0 + timedelta(minutes=i)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            read = user == "alice" and i % 2 == 1
            assert (n["read_at"] is not None) == read
    # Both recipients of a publish share its event, and keep its uuid.
    pairs = [row for row in stored_rows.stored() if row.seq == 3]
    assert len(pairs) == 2 and len({row.event_id for row in pairs}) == 1
    with connection.cursor() as cursor:
        assert "notify_notification" not in connection.introspection.table_names(cursor)


def test_backfill_command_copies_what_old_processes_wrote_later(old_schema: None) -> None:
    legacy_insert(legacy_rows(3))
    migrate([("notifications", "0003_copy_legacy_rows")])
    assert Notification.objects.count() == 6
    # Old processes still running write more rows into the legacy table ...
    legacy_insert(legacy_rows(4, first_seq=4))
    out = io.StringIO()
    call_command("notify_backfill", "--batch-size", "3", stdout=out)
    assert "done" in out.getvalue()
    assert Notification.objects.count() == 14
    # ... a repeated run finds nothing more (and duplicates nothing).
    call_command("notify_backfill", "--after-id", "0", stdout=io.StringIO())
    assert Notification.objects.count() == 14
    assert NotificationEvent.objects.count() == 7
    # The contract step's own catch-up copies a row written after that.
    legacy_insert(legacy_rows(1, first_seq=8))
    migrate(latest())
    assert [n["id"] for n in notifications_after(user_id="bob", after=0)] == [
        str(i) for i in range(1, 9)
    ]


def test_expand_step_alone_leaves_the_legacy_rows_in_place(old_schema: None) -> None:
    legacy_insert(legacy_rows(2))
    migrate(EXPANDED)
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM notify_notification")
        assert cursor.fetchone() == (4,)
        cursor.execute("SELECT count(*) FROM notify_recipient")
        assert cursor.fetchone() == (0,)


def legacy_table() -> list[tuple[Any, ...]]:
    """The legacy rows as the old code reads them, in (user_id, seq) order."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT user_id, seq, event_id, type, title, body, source, created_at, read_at "
            "FROM notify_notification ORDER BY user_id, seq"
        )
        return list(cursor.fetchall())


def test_rolling_back_the_contract_step_copies_every_row_back(old_schema: None) -> None:
    """``migrate notifications 0003`` after 0004: the previous release finds
    every notification (the old ones, those the new code published, its read
    marks) in its table; migrating forward again duplicates nothing and
    keeps what the old code wrote meanwhile."""
    legacy_insert(legacy_rows(2))
    with connection.cursor() as cursor:  # the old code's counters, as it left them
        cursor.execute(
            "INSERT INTO notify_user_sequence (user_id, last_id, purged_through) "
            "VALUES ('alice', 2, 0), ('bob', 2, 0)"
        )
    migrate(latest())
    services.notifications_publish(
        source="shop", recipients=["alice", "carol"], type="t.new", title="new", data={"k": 1}
    )
    assert services.notifications_mark_read(user_id="alice", ids=[3]) == [3]
    before = {(n.user_id, n.seq): n for n in stored_rows.stored()}
    assert len(before) == 6

    migrate(CONTRACTED_BEFORE)

    rows = legacy_table()
    assert [(r[0], r[1]) for r in rows] == sorted(before)
    for user_id, seq, event_id, type_, title, body, source, _created_at, read_at in rows:
        n = before[(user_id, seq)]
        stored = event_id if isinstance(event_id, uuid.UUID) else uuid.UUID(event_id)
        assert stored == n.event_id
        assert (type_, title, body, source) == (n.type, n.title, n.body, n.source)
        assert (read_at is not None) == (n.read_at is not None)
    with connection.cursor() as cursor:
        cursor.execute("SELECT data FROM notify_notification WHERE user_id = 'carol'")
        (data,) = cursor.fetchone()
    assert (json.loads(data) if isinstance(data, str) else data) == {"k": 1}

    # The previous release writes on its table meanwhile; then forward again.
    legacy_insert([{**legacy_rows(1)[0], "user_id": "dave", "seq": 1}])
    migrate(latest())
    assert stored_rows.count() == 7
    assert NotificationEvent.objects.count() == 4
    assert [n["id"] for n in notifications_after(user_id="alice", after=0)] == ["1", "2", "3"]
    assert [n["read_at"] is not None for n in notifications_after(user_id="alice", after=0)] == [
        False, True, True,
    ]  # fmt: skip
    assert [n["type"] for n in notifications_after(user_id="dave", after=0)] == ["t.0"]
