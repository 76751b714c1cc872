"""The user key (notifications/user_keys.py, migration 0005): publishing
keys each new user once and draws nothing for existing ones; the online
migration keys a table that old code keeps writing to, and resumes an
interrupted run. Runs with NOTIFY_TEST_DATABASE=postgres (and pgbouncer)."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator

import pytest
from django.db import DatabaseError, connection, connections

from notifications import publishing, user_keys
from notifications.models import UserSequence
from tests.support.databases import postgres_only
from tests.support.migrations import latest, migrate, migrated_to

pytestmark = pytest.mark.django_db(transaction=True)

TABLE = user_keys.TABLE
BEFORE_KEY = [("notifications", "0004_drop_legacy_table")]


_postgres_only = postgres_only("the user key is PostgreSQL's")


@pytest.fixture
def before_key() -> Iterator[None]:
    with migrated_to(BEFORE_KEY):
        yield


def keys() -> dict[str, int | None]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT user_id, key FROM notify_user_sequence")
        return dict(cursor.fetchall())


def commit(recipients: list[str]) -> None:
    publication = publishing.Publication(source="shop", type="t", recipients=recipients)
    publishing.notifications_publish_many(publications=[publication])


def column_state() -> tuple[bool, bool]:
    """(key is NOT NULL, its unique index is valid)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT attnotnull FROM pg_attribute WHERE attrelid = 'notify_user_sequence'::regclass "
            "AND attname = 'key'"
        )
        (not_null,) = cursor.fetchone()
        cursor.execute(
            "SELECT x.indisvalid FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid "
            "WHERE i.relname = %s",
            [user_keys.INDEX],
        )
        found = cursor.fetchone()
    return bool(not_null), bool(found and found[0])


def test_publishing_keys_each_new_user_once() -> None:
    commit(["ann", "bob", "cy"])
    first = keys()
    assert len(set(first.values())) == 3 and None not in first.values()
    for _ in range(3):  # existing users: same keys, nothing drawn from the sequence
        commit(["ann", "bob", "cy"])
    commit(["bob", "dee"])
    after = keys()
    assert {user: after[user] for user in first} == first
    assert after["dee"] == max(first.values()) + 1  # type: ignore[type-var,operator]
    assert UserSequence.objects.get(user_id="bob").last_id == 5


def test_rows_made_by_other_inserts_get_a_key_too() -> None:
    UserSequence.objects.create(user_id="ed", last_id=3)
    commit(["ed"])
    found = keys()
    assert found["ed"] is not None
    assert UserSequence.objects.get(user_id="ed").last_id == 4


# What the code before 0005 runs for each publish: its upsert names no key.
OLD_ALLOCATE = (
    "INSERT INTO notify_user_sequence (user_id, last_id, purged_through) "
    "SELECT u, 1, 0 FROM unnest(%s::text[]) AS t(u) ORDER BY u "
    "ON CONFLICT (user_id) DO UPDATE SET last_id = notify_user_sequence.last_id + 1"
)


def test_the_migration_keys_a_table_old_code_keeps_writing(before_key: None) -> None:
    existing = [f"u{i:05d}" for i in range(3000)]
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO notify_user_sequence (user_id, last_id, purged_through) "
            "SELECT u, 1, 0 FROM unnest(%s::text[]) AS t(u)",
            [existing],
        )
    published: Counter[str] = Counter()
    stop, started = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def old_process(worker: int) -> None:
        """Publishes as a process still on the old code: existing users and
        new ones, until the migration is done."""
        try:
            n = 0
            while not stop.is_set() or n < 5:
                users = [existing[(worker * 997 + n * 31) % len(existing)], f"new{worker}-{n}"]
                with connection.cursor() as cursor:
                    cursor.execute(OLD_ALLOCATE, [sorted(users)])
                published.update(users)
                n += 1
                started.set()
        except BaseException as error:  # reported by the test thread
            errors.append(error)
            started.set()
        finally:
            connections.close_all()

    threads = [threading.Thread(target=old_process, args=(w,)) for w in range(3)]
    for thread in threads:
        thread.start()
    assert started.wait(30)
    try:
        user_keys.add_key_column(connection, batch=100)
    finally:
        stop.set()
        for thread in threads:
            thread.join(60)
    assert not errors

    found = keys()
    assert None not in found.values()
    assert len(set(found.values())) == len(found)  # every key once
    assert column_state() == (True, True)
    lasts = dict(UserSequence.objects.values_list("user_id", "last_id"))
    for user, count in published.items():  # no publish lost
        assert lasts[user] == count + (1 if user in existing else 0)
    # A re-run finds everything done; new code (on the compact recipient
    # table of 0006) then keeps the keys.
    assert user_keys.add_key_column(connection) == 0
    migrate(latest())
    commit(existing[:2])
    assert keys() == found


def test_an_interrupted_migration_resumes(before_key: None) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO notify_user_sequence (user_id, last_id, purged_through) "
            "SELECT 'r' || i, 1, 0 FROM generate_series(1, 500) AS i"
        )
        cursor.execute(f"ALTER TABLE {user_keys.TABLE} ADD COLUMN key integer")
        # Two rows with one key: the unique index build fails half-way,
        # leaving an invalid index behind, as an interrupted build does.
        cursor.execute("UPDATE notify_user_sequence SET key = -7 WHERE user_id IN ('r1', 'r2')")
    with pytest.raises(DatabaseError), connection.cursor() as cursor:
        cursor.execute(f"CREATE UNIQUE INDEX CONCURRENTLY {user_keys.INDEX} ON {TABLE} (key)")
    assert column_state() == (False, False)
    with connection.cursor() as cursor:
        cursor.execute("UPDATE notify_user_sequence SET key = NULL WHERE user_id = 'r2'")

    assert user_keys.add_key_column(connection, batch=64) == 499
    found = keys()
    assert found["r1"] == -7 and len(set(found.values())) == 500
    assert column_state() == (True, True)
