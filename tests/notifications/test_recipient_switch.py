"""The online switch to the compact recipient table (notifications/
recipient_switch.py, ``manage.py notify_prepare_recipients``, then 0006's
swap): while the previous release keeps publishing and marking read on the
old table, every row ends up in the new one exactly once with its read
state, and an interrupted fill resumes. Runs with
NOTIFY_TEST_DATABASE=postgres (and pgbouncer)."""

from __future__ import annotations

import io
import random
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection, connections

from notifications import recipient_switch
from tests.support.databases import postgres_only
from tests.support.migrations import latest, migrate, migrated_to

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE_COMPACT = [("notifications", "0005_user_key")]
USERS = [f"u{i:03d}" for i in range(60)]

# What the release before 0006 runs per publish and per mark-read.
OLD_ALLOCATE = (
    "INSERT INTO notify_user_sequence AS s (user_id, last_id, purged_through) "
    "SELECT u, 1, 0 FROM unnest(%s::text[]) AS t(u) ORDER BY u "
    "ON CONFLICT (user_id) DO UPDATE SET last_id = s.last_id + 1 RETURNING user_id, last_id"
)
OLD_EVENT = (
    "INSERT INTO notify_event (event_id, type, title, body, data, source, created_at) "
    "VALUES (gen_random_uuid(), 't', '', '', '{}', 'shop', now()) RETURNING id, created_at"
)
OLD_ROWS = (
    "INSERT INTO notify_recipient (user_id, seq, event_ref, created_at) "
    "SELECT u, q, %s, %s FROM unnest(%s::text[], %s::bigint[]) AS t(u, q)"
)
OLD_MARK = (
    "UPDATE notify_recipient SET read_at = now() "
    "WHERE user_id = %s AND seq = %s AND read_at IS NULL"
)


_postgres_only = postgres_only("the compact layout is PostgreSQL's")


@pytest.fixture
def before_compact() -> Iterator[None]:
    with migrated_to(BEFORE_COMPACT):
        try:
            yield
        finally:
            with connection.cursor() as cursor:
                left = recipient_switch.prepared(cursor) and recipient_switch.remaining(cursor)
            if left:  # a failed test: leave the database as the next test expects
                recipient_switch.abandon(connection)


def old_publish(cursor: Any, users: list[str]) -> list[tuple[str, int]]:
    cursor.execute("BEGIN")
    cursor.execute(OLD_ALLOCATE, [sorted(users)])
    given = sorted(cursor.fetchall())
    cursor.execute(OLD_EVENT)
    ref, created = cursor.fetchone()
    cursor.execute(OLD_ROWS, [ref, created, [u for u, _ in given], [q for _, q in given]])
    cursor.execute("COMMIT")
    return given


def seed_closed_days() -> None:
    """Rows of three closed days (their old partitions), a third read."""
    with connection.cursor() as cursor:
        for back in (3, 2, 1):
            cursor.execute(
                "WITH e AS (INSERT INTO notify_event (event_id, type, title, body, data, source, "
                "created_at) SELECT gen_random_uuid(), 't', '', '', '{}', 'shop', "
                "date_trunc('day', now()) - make_interval(days => %s) + n * interval '1 minute' "
                "FROM generate_series(1, 20) n RETURNING id, created_at) "
                "INSERT INTO notify_recipient (user_id, seq, event_ref, created_at, read_at) "
                "SELECT 'u' || lpad(u::text, 3, '0'), "
                "(SELECT count(*) FROM notify_recipient r WHERE r.user_id = "
                "'u' || lpad(u::text, 3, '0')) + row_number() OVER (PARTITION BY u ORDER BY e.id), "
                "e.id, e.created_at, CASE WHEN (u + e.id) %% 3 = 0 THEN e.created_at END "
                "FROM e, generate_series(0, 59) u",
                [back],
            )
        cursor.execute(
            "INSERT INTO notify_user_sequence (user_id, last_id, purged_through) "
            "SELECT user_id, max(seq), 0 FROM notify_recipient GROUP BY user_id"
        )


def old_table() -> dict[tuple[str, int], tuple[int, bool]]:
    """(user, id) -> (event ref, read) of the old table; duplicates fail."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT user_id, seq, event_ref, read_at IS NOT NULL FROM notify_recipient")
        found = cursor.fetchall()
    table = {(u, q): (ref, read) for u, q, ref, read in found}
    assert len(table) == len(found)
    return table


def new_table() -> dict[tuple[str, int], tuple[int, bool]]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT s.user_id, r.seq, r.event_ref, r.read_at IS NOT NULL "
            "FROM notify_recipient r JOIN notify_user_sequence s ON s.key = r.user_key"
        )
        found = cursor.fetchall()
        cursor.execute("SELECT count(*) FROM notify_recipient")
        assert cursor.fetchone()[0] == len(found)  # every row's key is a user's
    table = {(u, q): (ref, read) for u, q, ref, read in found}
    assert len(table) == len(found), "a row copied twice"
    return table


def test_the_switch_keeps_every_row_once_while_old_code_writes(before_compact: None) -> None:
    seed_closed_days()
    stop, started = threading.Event(), threading.Event()
    errors: list[BaseException] = []
    published: list[tuple[str, int]] = []
    marked: list[tuple[str, int]] = []

    def publisher(worker: int) -> None:
        rng = random.Random(worker)
        try:
            with connections["default"].cursor() as cursor:
                while not stop.is_set() or len(published) < 20:
                    users = [*rng.sample(USERS, 3), f"new{worker}-{len(published)}"]
                    published.extend(old_publish(cursor, users))
                    started.set()
        except BaseException as error:  # reported by the test thread
            errors.append(error)
            started.set()
        finally:
            connections.close_all()

    def marker() -> None:
        rng = random.Random(99)
        try:
            with connections["default"].cursor() as cursor:
                while not stop.is_set() or len(marked) < 50:
                    user, seq = rng.choice(USERS), rng.randint(1, 25)
                    if published and rng.random() < 0.5:
                        user, seq = rng.choice(published)
                    cursor.execute(OLD_MARK, [user, seq])
                    if cursor.rowcount:
                        marked.append((user, seq))
        except BaseException as error:
            errors.append(error)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=publisher, args=(w,)) for w in range(2)]
    threads.append(threading.Thread(target=marker))
    for thread in threads:
        thread.start()
    assert started.wait(30)
    try:
        before = len(published)
        out = io.StringIO()
        call_command("notify_prepare_recipients", "--batch-size", "40", stdout=out)
        assert "done:" in out.getvalue()
        during = len(published) - before
    finally:
        stop.set()
        for thread in threads:
            thread.join(60)
    assert not errors
    assert during > 0  # the old code wrote while the table was filled
    assert marked  # and marked rows read

    expected = old_table()
    assert len(expected) == 3 * 20 * 60 + len(published)
    migrate(latest())  # 0006: the swap
    assert new_table() == expected
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT to_regclass('notify_recipient_switch'), to_regclass('notify_recipient_new')"
        )
        assert cursor.fetchone() == (None, None)


class Killed(Exception):
    pass


def test_an_interrupted_fill_resumes_and_migrate_waits_for_it(before_compact: None) -> None:
    seed_closed_days()
    recipient_switch.prepare(connection)
    chunks: list[int] = []

    def interrupt(part: str, done: int, top: int) -> None:
        chunks.append(done)
        if len(chunks) == 5:
            raise Killed  # a killed pod

    with pytest.raises(Killed):
        recipient_switch.backfill(connection, batch=100, progress=interrupt)
    with connection.cursor() as cursor:
        old_publish(cursor, ["u001", "late"])  # mirrored, not in the fill
    with pytest.raises(RuntimeError, match="notify_prepare_recipients"):
        migrate(latest())
    expected = old_table()

    out = io.StringIO()
    call_command("notify_prepare_recipients", "--batch-size", "100", stdout=out)
    assert "done:" in out.getvalue()
    migrate(latest())
    assert new_table() == expected
