"""``notify_wire_page`` (migration 0007): PostgreSQL's replays, pages and
single notifications read through a PL/pgSQL function whose plans each
connection keeps. Its answers are the inline statement's (wire_sql), with
the plans it keeps too, and a kept plan follows the day partitions the
purge drops and creates. Runs with NOTIFY_TEST_DATABASE=postgres (and
pgbouncer)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import connection

from notifications import partitions, selectors, wire_sql
from notifications.models import UserSequence
from notifications.services import notifications_purge
from tests.support.databases import postgres_only
from tests.support.migrations import migrated_to
from tests.support.rows import set_read_at, store

pytestmark = pytest.mark.django_db(transaction=True)

NO_BOUND = 2**63 - 1
# More calls than PL/pgSQL plans one by one (five) before it keeps a
# generic plan: the comparisons cover the kept plans as well.
ROUNDS = 8


_postgres_only = postgres_only("PostgreSQL's function")


def today() -> datetime:
    now = datetime.now(UTC)
    return datetime(now.year, now.month, now.day, tzinfo=UTC)


def through_function(**args: Any) -> list[tuple[Any, ...]]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT * FROM notify_wire_page(%s, %s, %s, %s, %s, %s, %s)",
            [
                args["user"],
                args.get("after", 0),
                args.get("up_to", NO_BOUND),
                args.get("before", NO_BOUND),
                args.get("unread", False),
                args["descending"],
                args["limit"],
            ],
        )
        return cursor.fetchall()


def inline(**args: Any) -> list[tuple[Any, ...]]:
    """The same page through the inline statement (planned every time)."""
    if args["descending"]:
        where = "AND seq < %s" + (" AND read_at IS NULL" if args.get("unread") else "")
        params = [args.get("before", NO_BOUND)]
    else:
        where = "AND seq > %s AND seq <= %s"
        params = [args.get("after", 0), args.get("up_to", NO_BOUND)]
    with connection.cursor() as cursor:
        cursor.execute(
            wire_sql.statement(where=where, descending=args["descending"]),
            [args["user"], *params, args["limit"]],
        )
        return cursor.fetchall()


def seed_days() -> None:
    """Two users' rows over four days (three closed, today), one in the
    default partition, every other one read, with content of their own."""
    start = today() - timedelta(days=3)
    partitions.ensure_partitions(first=start.date(), days=4)
    rows = []
    for user, count in (("ann", 12), ("bo", 5)):
        for seq in range(1, count + 1):
            when = start + timedelta(days=(seq - 1) // 3, hours=seq, microseconds=seq)
            rows.append(
                {
                    "user_id": user,
                    "seq": seq,
                    "created_at": when,
                    "title": f"{user} {seq}",
                    "data": {"seq": seq, "list": [seq, None]},
                }
            )
    far = today() + timedelta(days=partitions.DAYS_AHEAD + 5)  # no day partition: default
    rows.append({"user_id": "ann", "seq": 13, "created_at": far, "title": "late"})
    store(rows)
    read = datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC)
    set_read_at("ann", range(1, 14, 2), read)
    set_read_at("bo", [2], read)
    UserSequence.objects.filter(user_id="ann").update(last_id=13)
    UserSequence.objects.filter(user_id="bo").update(last_id=5)


CASES: list[dict[str, Any]] = [
    {"user": "ann", "descending": False, "limit": 500},
    {"user": "ann", "descending": False, "after": 4, "limit": 500},
    {"user": "ann", "descending": False, "after": 2, "up_to": 9, "limit": 3},
    {"user": "ann", "descending": False, "after": 6, "up_to": 7, "limit": 1},  # one id
    {"user": "ann", "descending": True, "limit": 5},
    {"user": "ann", "descending": True, "before": 8, "limit": 4},
    {"user": "ann", "descending": True, "unread": True, "limit": 50},
    {"user": "ann", "descending": True, "unread": True, "before": 9, "limit": 2},
    {"user": "bo", "descending": False, "after": 1, "limit": 500},
    {"user": "bo", "descending": True, "unread": True, "limit": 50},
    {"user": "ghost", "descending": False, "limit": 500},
    {"user": "ghost", "descending": True, "limit": 50},
]


def test_the_function_answers_as_the_inline_statement() -> None:
    seed_days()
    for _ in range(ROUNDS):
        for case in CASES:
            found = through_function(**case)
            assert found == inline(**case), case
    assert [row[0] for row in through_function(**CASES[2])] == [3, 4, 5]
    assert [row[0] for row in through_function(**CASES[7])] == [8, 6]
    assert through_function(**CASES[-1]) == []
    [late] = through_function(user="ann", descending=True, limit=1)
    assert late[0] == 13 and late[3] == "" and late[7] == "2026-01-02T03:04:05.000006Z"


def test_a_kept_plan_follows_the_days_the_purge_drops_and_creates() -> None:
    old = today() - timedelta(days=40)
    partitions.ensure_partitions(first=old.date(), days=2)
    store([{"user_id": "cy", "seq": s, "created_at": old + timedelta(hours=s)} for s in (1, 2)])
    store([{"user_id": "cy", "seq": 3, "created_at": old + timedelta(days=1, hours=1)}])
    UserSequence.objects.filter(user_id="cy").update(last_id=3)
    for _ in range(ROUNDS):  # the connection keeps its plans
        assert ids(selectors.notifications_after(user_id="cy", after=0)) == [1, 2, 3]
        assert ids(selectors.notifications_page(user_id="cy").results) == [3, 2, 1]

    assert notifications_purge(older_than_days=39) == 2  # day -40's partitions dropped

    assert ids(selectors.notifications_after(user_id="cy", after=0)) == [3]
    assert ids(selectors.notifications_page(user_id="cy").results) == [3]
    ahead = today() + timedelta(days=partitions.DAYS_AHEAD + 1)
    partitions.ensure_partitions(first=ahead.date(), days=1)
    store([{"user_id": "cy", "seq": 4, "created_at": ahead + timedelta(hours=2)}])
    assert ids(selectors.notifications_after(user_id="cy", after=2)) == [3, 4]
    assert selectors.notification_get(user_id="cy", seq=4) is not None


def test_the_migration_creates_and_drops_the_function() -> None:
    assert function_exists()
    with migrated_to([("notifications", "0006_compact_recipients")]):
        assert not function_exists()
    assert function_exists()
    assert through_function(user="ghost", descending=False, limit=1) == []


def function_exists() -> bool:
    signature = "notify_wire_page(text, bigint, bigint, bigint, boolean, boolean, integer)"
    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regprocedure(%s) IS NOT NULL", [signature])
        return bool(cursor.fetchone()[0])


def ids(items: list[dict[str, object]]) -> list[int]:
    return [int(str(item["id"])) for item in items]
