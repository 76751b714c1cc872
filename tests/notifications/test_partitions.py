"""PostgreSQL's day partitions (notifications/partitions.py): rows land in
their day whatever the time of day, no insert fails for a missing day, and
the purge drops whole days while keeping ``purged_through`` (and so
``ready.complete``) right. Runs with NOTIFY_TEST_DATABASE=postgres."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from django.db import connection

from notifications import partitions, selectors
from notifications.models import NotificationEvent, UserSequence
from notifications.selectors import notifications_after, sequence_state
from notifications.services import notifications_compact, notifications_purge
from tests.support.databases import postgres_only
from tests.support.rows import store, stored

pytestmark = pytest.mark.django_db(transaction=True)


_postgres_only = postgres_only("PostgreSQL partitions")


def today() -> datetime:
    now = datetime.now(UTC)
    return datetime(now.year, now.month, now.day, tzinfo=UTC)


def homes(table: str) -> dict[int, str]:
    """seq -> the partition its recipient row is stored in."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT seq, tableoid::regclass::text FROM {table}")
        return dict(cursor.fetchall())


def rows(user: str, seqs: range, at: datetime, **extra: Any) -> list[dict[str, Any]]:
    return [{"user_id": user, "seq": s, "created_at": at, **extra} for s in seqs]


def complete(user: str, since: int) -> bool:
    """What the ``ready`` frame says (realtime/engine.py)."""
    state = sequence_state(user_id=user)
    return state.purged_through <= since <= state.last_id


def test_rows_at_a_day_boundary_land_in_their_day() -> None:
    day = today() + timedelta(days=20)  # beyond what the migration created
    partitions.ensure_partitions(first=day.date(), days=2)
    midnight = day + timedelta(days=1)
    store(rows("ann", range(1, 2), midnight - timedelta(microseconds=1)))
    store(rows("ann", range(2, 3), midnight))
    store(rows("ann", range(3, 4), midnight + timedelta(days=1)))  # no partition: default
    assert homes("notify_recipient") == {
        1: partitions.partition_name("notify_recipient", day.date()),
        2: partitions.partition_name("notify_recipient", midnight.date()),
        3: "notify_recipient_default",
    }
    UserSequence.objects.update_or_create(user_id="ann", defaults={"last_id": 3})
    assert [n["id"] for n in notifications_after(user_id="ann", after=0)] == ["1", "2", "3"]


def test_the_purge_creates_the_days_ahead() -> None:
    ahead = today() + timedelta(days=partitions.DAYS_AHEAD)
    name = partitions.partition_name("notify_event", ahead.date())
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS " + name)
    notifications_purge(older_than_days=30)
    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass(%s)", [name])
        assert cursor.fetchone() == (name,)


def test_purge_drops_whole_days_and_keeps_purged_through_right() -> None:
    old = today() - timedelta(days=40)
    partitions.ensure_partitions(first=old.date(), days=2)
    store(rows("bo", range(1, 4), old + timedelta(hours=23)))  # day -40: goes
    store(rows("bo", range(4, 6), old + timedelta(days=1)))  # day -39: stays
    store(rows("cy", range(1, 3), old - timedelta(days=5)))  # default partition: goes
    store(rows("cy", range(3, 4), old + timedelta(days=1, hours=5)))
    UserSequence.objects.update_or_create(user_id="bo", defaults={"last_id": 5})
    UserSequence.objects.update_or_create(user_id="cy", defaults={"last_id": 3})
    assert not complete("bo", 0) or sequence_state(user_id="bo").purged_through == 0

    removed = notifications_purge(older_than_days=39)

    assert removed == 5
    assert [(r.user_id, r.seq) for r in stored()] == [
        ("bo", 4),
        ("bo", 5),
        ("cy", 3),
    ]
    assert sequence_state(user_id="bo").purged_through == 3
    assert sequence_state(user_id="cy").purged_through == 2
    # ready.complete: true exactly when nothing asked for is gone.
    assert [complete("bo", since) for since in range(6)] == [False] * 3 + [True] * 3
    assert [complete("cy", since) for since in range(4)] == [False, False, True, True]
    assert [n["id"] for n in notifications_after(user_id="bo", after=3)] == ["4", "5"]
    # The day's partitions are gone, of both tables, and no event outlives its rows.
    gone = partitions.partition_name("notify_recipient", old.date())
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT to_regclass(%s), to_regclass(%s)", [gone, gone.replace("recipient", "event")]
        )
        assert cursor.fetchone() == (None, None)
    assert NotificationEvent.objects.filter(created_at__lt=old + timedelta(days=1)).count() == 0


def test_the_purge_raises_purged_through_batch_by_batch() -> None:
    """A publish to one of a day's users waits for that user's batch at
    most: each batch commits on its own. With the last user's row held by
    another session, the purge waits there, and every user of the batches
    before it is already raised, for every session to see."""
    old = today() - timedelta(days=40)
    partitions.ensure_partitions(first=old.date(), days=1)
    users = [f"batch-{n:04d}" for n in range(partitions.PURGED_BATCH + 1)]
    store(row for user in users for row in rows(user, range(1, 3), old))
    UserSequence.objects.filter(user_id__in=users).update(last_id=2)
    last = users[-1]  # the highest key: stored last, in the last batch
    failures: list[BaseException] = []

    def purge() -> None:
        try:
            notifications_purge(older_than_days=35)
        except BaseException as error:  # raised in the test's thread below
            failures.append(error)
        finally:
            connection.close()

    with other_connection() as holder, other_connection() as prober:
        holder.execute("SELECT 1 FROM notify_user_sequence WHERE user_id = %s FOR UPDATE", [last])
        purging = threading.Thread(target=purge)
        purging.start()
        wait_for_lock_wait(prober)
        raised = prober.execute(
            "SELECT count(*) FROM notify_user_sequence WHERE user_id = ANY(%s) "
            "AND purged_through = 2",
            [users[:-1]],
        ).fetchone()
        prober.rollback()
        holder.rollback()
        purging.join(timeout=60)
    assert raised == (partitions.PURGED_BATCH,)
    assert not purging.is_alive() and not failures
    assert sequence_state(user_id=last).purged_through == 2


def test_a_day_left_detached_by_a_stopped_purge_is_dropped_by_the_next() -> None:
    """The drop has a transaction of its own, after the detach's (which
    holds the parent's lock): a purge stopped between the two leaves a
    detached day, which the next purge drops."""
    old = today() - timedelta(days=40)
    partitions.ensure_partitions(first=old.date(), days=1)
    store(rows("el", range(1, 3), old))
    name = partitions.partition_name("notify_recipient", old.date())
    with connection.cursor() as cursor:
        cursor.execute(f"ALTER TABLE notify_recipient DETACH PARTITION {name}")
        cursor.execute("CREATE TABLE notify_recipient_pnotaday (x int)")  # not a day's
    notifications_purge(older_than_days=35)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT to_regclass(%s), to_regclass('notify_recipient_pnotaday')::text", [name]
        )
        assert cursor.fetchone() == (None, "notify_recipient_pnotaday")
        cursor.execute("DROP TABLE notify_recipient_pnotaday")


def test_a_day_is_dropped_only_once_it_has_settled() -> None:
    """However short the retention, a day's partition stays until the day
    has been over for ``SETTLED``: a publish that began before midnight may
    still be writing its rows there, and the purge counts a day's rows
    (purged_through) once, before dropping it."""
    day = today().date()
    partitions.ensure_partitions(first=day, days=1)
    store(rows("fay", range(1, 2), today() + timedelta(minutes=1)))
    days = set(partitions._partitions().values())
    try:
        partitions.drop_expired(before=day + timedelta(days=2))
    finally:  # the days before today it dropped, for the other tests
        for gone in sorted(days - set(partitions._partitions().values())):
            partitions.ensure_partitions(first=gone, days=1)

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT to_regclass(%s)::text", [partitions.partition_name("notify_recipient", day)]
        )
        assert cursor.fetchone() == (partitions.partition_name("notify_recipient", day),)
    assert [(r.user_id, r.seq) for r in stored()] == [("fay", 1)]


def test_purged_through_never_goes_back() -> None:
    old = today() - timedelta(days=40)
    partitions.ensure_partitions(first=old.date(), days=1)
    store(rows("di", range(1, 3), old))
    UserSequence.objects.update_or_create(
        user_id="di", defaults={"last_id": 9, "purged_through": 7}
    )
    notifications_purge(older_than_days=35)
    assert sequence_state(user_id="di").purged_through == 7


@contextmanager
def other_connection() -> Iterator[psycopg.Connection[Any]]:
    """A second session on the test database, in a transaction of its own."""
    with psycopg.connect(**connection.get_connection_params()) as other:
        yield other
        other.rollback()


def wait_for_lock_wait(watcher: psycopg.Connection[Any], *, timeout: float = 30.0) -> None:
    """Until some session waits for a row or table lock (the purge, here)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = watcher.execute("SELECT count(*) FROM pg_locks WHERE NOT granted").fetchone()
        watcher.rollback()
        if found and found[0]:
            return
        time.sleep(0.02)
    raise AssertionError("the purge never waited for the held row")


@pytest.mark.parametrize("home", ["day partition", "default partition"])
def test_the_purge_locks_counter_rows_in_the_order_publishes_do(home: str) -> None:
    """A publish locks its users' counter rows in user_id order (pg_writes);
    a purge that took them in another order deadlocked with publishes to
    the same users, and PostgreSQL cancelled one of the two. Here the first
    user in user_id order is held by another session: a purge that locks in
    that order waits for it holding no other user's row."""
    old = today() - timedelta(days=40)
    at = old + timedelta(hours=1)
    if home == "day partition":
        partitions.ensure_partitions(first=old.date(), days=1)
    else:
        at = today() - timedelta(days=400)  # no day partition: the default one
    # The counter rows (and keys) are made in the reverse of user_id order.
    users = [f"lock-{letter}" for letter in "zyxwvutsrqpa"]
    for user in users:
        store(rows(user, range(1, 3), at))
    UserSequence.objects.filter(user_id__in=users).update(last_id=2)
    failures: list[BaseException] = []

    def purge() -> None:
        try:
            notifications_purge(older_than_days=35)
        except BaseException as error:  # raised in the test's thread below
            failures.append(error)
        finally:
            connection.close()

    with other_connection() as holder, other_connection() as prober:
        holder.execute("SELECT 1 FROM notify_user_sequence WHERE user_id = 'lock-a' FOR UPDATE")
        purging = threading.Thread(target=purge)
        purging.start()
        wait_for_lock_wait(prober)
        # Every other user's row is free: the purge waits on the first one.
        for user in users[:-1]:
            prober.execute(
                "SELECT 1 FROM notify_user_sequence WHERE user_id = %s FOR UPDATE NOWAIT", [user]
            )
        prober.rollback()
        holder.rollback()
        purging.join(timeout=60)
    assert not purging.is_alive() and not failures
    assert {user: sequence_state(user_id=user).purged_through for user in users} == dict.fromkeys(
        users, 2
    )


def index_oids(partition: str) -> dict[str, int]:
    """The partition's indexes by name: a rebuild gives each a new oid."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT ic.relname, ic.oid FROM pg_index x JOIN pg_class ic ON ic.oid = x.indexrelid "
            "WHERE x.indrelid = %s::regclass",
            [partition],
        )
        return dict(cursor.fetchall())


@pytest.fixture
def uncompacted() -> None:
    """No day marked as rebuilt: the marks (comments) outlive a test's rows."""
    with connection.cursor() as cursor:
        for name in partitions._partitions():
            cursor.execute(f"COMMENT ON TABLE {name} IS NULL")


@pytest.mark.usefixtures("uncompacted")
def test_compaction_rebuilds_each_closed_day_once_and_leaves_today_alone() -> None:
    yesterday, now = today() - timedelta(days=1), today() + timedelta(hours=1)
    store(rows("ed", range(1, 4), yesterday + timedelta(hours=3), read_at=yesterday))
    store(rows("ed", range(4, 6), now))
    UserSequence.objects.update_or_create(user_id="ed", defaults={"last_id": 5})
    closed = partitions.partition_name("notify_recipient", yesterday.date())
    current = partitions.partition_name("notify_recipient", now.date())
    before = {name: index_oids(name) for name in (closed, current)}
    assert any("user_key_seq" in name for name in before[closed])

    rebuilt = notifications_compact()

    assert closed in rebuilt and current not in rebuilt
    assert set(index_oids(closed)) == set(before[closed])  # same names, new indexes
    assert not set(index_oids(closed).values()) & set(before[closed].values())
    assert index_oids(current) == before[current]
    assert notifications_compact() == []  # each day once
    # Reads through the rebuilt indexes: every row, read state and unread count.
    assert [n["id"] for n in notifications_after(user_id="ed", after=0)] == list("12345")
    assert selectors.unread_count(user_id="ed") == 2


@pytest.mark.usefixtures("uncompacted")
def test_compaction_drops_an_invalid_index_a_failed_rebuild_left() -> None:
    yesterday = today() - timedelta(days=1)
    store(rows("fy", range(1, 3), yesterday + timedelta(hours=2)))
    closed = partitions.partition_name("notify_recipient", yesterday.date())
    with connection.cursor() as cursor:
        # What an interrupted REINDEX CONCURRENTLY leaves: an invalid copy.
        cursor.execute(f"CREATE INDEX {closed}_ccnew ON {closed} (seq)")
        cursor.execute(
            "UPDATE pg_index SET indisvalid = false WHERE indexrelid = %s::regclass",
            [f"{closed}_ccnew"],
        )
    assert f"{closed}_ccnew" in index_oids(closed)
    assert closed in notifications_compact()
    assert f"{closed}_ccnew" not in index_oids(closed)
