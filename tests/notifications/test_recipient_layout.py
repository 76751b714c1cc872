"""The compact recipient table on PostgreSQL (migration 0006,
notifications/recipient_layout.py): rows keyed by the user key and kept
under their event's UTC day, written by both publishing paths (one
statement, and COPY for large groups) and read back through the key only.
Runs with NOTIFY_TEST_DATABASE=postgres (and pgbouncer)."""

from __future__ import annotations

import pytest
from django.db import connection

from notifications import pg_writes, publishing, recipient_layout, selectors, services
from tests.support import rows as stored_rows
from tests.support.databases import postgres_only

pytestmark = pytest.mark.django_db(transaction=True)


_postgres_only = postgres_only("the compact layout is PostgreSQL's")


def query(sql: str, params: list[object] | None = None) -> list[tuple[object, ...]]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return list(cursor.fetchall())


def test_the_table_is_the_compact_layout() -> None:
    columns = query(
        "SELECT attname, format_type(atttypid, atttypmod), attnotnull FROM pg_attribute "
        "WHERE attrelid = 'notify_recipient'::regclass AND attnum > 0 AND NOT attisdropped "
        "ORDER BY attnum"
    )
    assert columns == [
        ("user_key", "integer", True),
        ("day", "date", True),
        ("seq", "bigint", True),
        ("event_ref", "bigint", True),
        ("read_at", "timestamp with time zone", False),
    ]
    assert query("SELECT pg_get_partkeydef('notify_recipient'::regclass)") == [("RANGE (day)",)]
    indexes = dict(
        query("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'notify_recipient'")
    )
    # Plain indexes: uniqueness is the row-locked counter's, and a unique
    # index would have to carry the partition key (12 bytes more an entry).
    assert sorted(d.split(" USING ")[1] for d in indexes.values()) == [
        "btree (user_key, seq)",
        "btree (user_key, seq) WHERE (read_at IS NULL)",
    ]
    assert not any("UNIQUE" in d for d in indexes.values())
    assert recipient_layout.convert(connection) == 0  # a re-run does nothing


@pytest.mark.parametrize("recipients", [3, pg_writes.COMBINED_MAX_ROWS + 6], ids=["one", "copy"])
def test_rows_carry_the_allocators_key_and_the_events_day(recipients: int) -> None:
    users = [f"u{i:03d}" for i in range(recipients)]
    services.notifications_publish(source="shop", recipients=users[:2], type="first")
    result = services.notifications_publish(source="shop", recipients=users, type="t")
    found = query(
        "SELECT s.user_id, r.seq, r.day = (e.created_at AT TIME ZONE 'UTC')::date "
        "FROM notify_recipient r JOIN notify_user_sequence s ON s.key = r.user_key "
        "JOIN notify_event e ON e.id = r.event_ref WHERE e.event_id = %s ORDER BY 1",
        [result.event_id],
    )
    assert found == [(u, 2 if u in users[:2] else 1, True) for u in users]


def test_a_users_rows_are_its_keys_only() -> None:
    # Same ids for every user: reads, counts and mark-reads go by the key.
    for _ in range(3):
        publishing.notifications_publish_many(
            publications=[publishing.Publication(source="s", type="t", recipients=["a", "b"])]
        )
    assert services.notifications_mark_read(user_id="a", ids=[1, 3]) == [1, 3]
    assert stored_rows.read_state("a") == {1: True, 2: False, 3: True}
    assert stored_rows.read_state("b") == {1: False, 2: False, 3: False}
    assert selectors.unread_count(user_id="a") == 1
    assert selectors.unread_count(user_id="b") == 3
    assert services.notifications_mark_read(user_id="b", ids=None) == [1, 2, 3]
    assert selectors.unread_count(user_id="b") == 0
    assert [n["read_at"] is None for n in selectors.notifications_page(user_id="a").results] == [
        False,
        True,
        False,
    ]
    assert selectors.notification_get(user_id="ghost", seq=1) is None
    assert selectors.unread_count(user_id="ghost") == 0
