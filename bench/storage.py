"""Storage at size: fill PostgreSQL with N recipient rows, then measure
bytes per row, read p99s and the purge of one day (docs/scaling.md).

    .venv/bin/python -m bench.storage --rows 20000000

Starts a private, durable PostgreSQL (``fsync``, ``synchronous_commit`` and
``full_page_writes`` on; tests/support/servers.py) unless ``--database-url``
names one, migrates it, and fills it server-side (``generate_series``) in the
shape publishing writes: one event per publish shared by ``--fanout``
recipients, ``--days`` days of day partitions, each user with rows spread over
all days, 80 % of rows read. Sizes are taken as filled and again after the
closed days' indexes are compacted (the purge command's second step). The
reads go through the service's own selectors, with the collector tuned as a
server process tunes it after start-up. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from bench.django_env import setup_django  # noqa: E402 - after the path above
from bench.purge_publishing import purge_while_publishing  # noqa: E402

HEAVY_USER = "heavy-unread"
HEAVY_UNREAD = 10_000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.storage", description=__doc__)
    parser.add_argument("--rows", type=int, default=20_000_000, help="recipient rows")
    parser.add_argument("--fanout", type=int, default=10, help="recipients per publish")
    parser.add_argument("--rows-per-user", type=int, default=1000)
    parser.add_argument("--days", type=int, default=10)
    parser.add_argument("--samples", type=int, default=1000, help="reads per measured query")
    parser.add_argument("--legacy-rows", type=int, default=1_000_000, help="0: skip")
    parser.add_argument("--database-url", default="", help="an existing, empty database")
    args = parser.parse_args(argv)

    # The last step publishes while it purges (bench.purge_publishing): as fast as
    # one thread can, which the default per-source limits must not cut short.
    os.environ.setdefault("NOTIFY_PUBLISH_RATE", "100000/s")
    os.environ.setdefault("NOTIFY_PUBLISH_RECIPIENT_RATE", "1000000/s")
    server = None
    if not args.database_url:
        from tests.support.servers import PostgresServer

        server = PostgresServer(durable=True, settings={"shared_buffers": "1GB"})
        args.database_url = server.url
    try:
        setup_django(args.database_url)
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        result: dict[str, Any] = {"machine": machine(), "args": vars(args) | {"database_url": "-"}}
        result["fill_seconds"] = timed(lambda: fill(args))
        result["sizes"] = sizes()
        result["compaction"] = compaction()
        result["sizes_compacted"] = sizes()
        result["reads_ms"] = reads(args)
        result["purge_one_day"] = purge_while_publishing(
            older_than_days=args.days - 2,  # the oldest day
            users=max(1, args.rows // args.rows_per_user),
            fanout=args.fanout,
        )
        if args.legacy_rows:
            result["legacy_schema"] = legacy_sizes(args)
        print(json.dumps(result, indent=2, default=float))
    finally:
        if server is not None:
            server.close()
    return 0


def machine() -> dict[str, Any]:
    with open("/proc/meminfo") as f:
        mem_kb = int(f.readline().split()[1])
    return {
        "cpus": os.cpu_count(),
        "memory_gib": round(mem_kb / 2**20, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "postgres": scalar("SHOW server_version"),
        "fsync": scalar("SHOW fsync"),
        "synchronous_commit": scalar("SHOW synchronous_commit"),
    }


def scalar(sql: str, params: list[Any] | None = None) -> Any:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(sql, params or [])
        row = cursor.fetchone()
    return row[0] if row else None


def execute(sql: str, params: list[Any] | dict[str, Any] | None = None) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(sql, params or [])


def timed(func: Callable[[], Any]) -> float:
    start = time.perf_counter()
    func()
    return round(time.perf_counter() - start, 1)


def fill(args: argparse.Namespace) -> None:
    """The users' counters (user u keyed u + 1), then day by day: the
    events, then their recipient rows, each day one transaction. Row k: user
    k % U, id k // U + 1 (so every user's ids rise with time), event k //
    fanout, kept under its event's day."""
    from datetime import UTC, datetime, timedelta

    from notifications import partitions

    users = max(1, args.rows // args.rows_per_user)
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    first = today - timedelta(days=args.days - 1)
    partitions.ensure_partitions(first=first.date(), days=args.days + 1)
    execute(
        "INSERT INTO notify_user_sequence (user_id, last_id, purged_through, key) "
        "SELECT 'user-' || u, (%(n)s - 1 - u) / %(u)s + 1, 0, u + 1 "
        "FROM generate_series(0, %(last)s) u",
        {"n": args.rows, "u": users, "last": users - 1},
    )
    execute(
        "INSERT INTO notify_user_sequence (user_id, last_id, purged_through, key) "
        "VALUES (%s, %s, 0, %s)",
        [HEAVY_USER, HEAVY_UNREAD, users + 1],
    )
    execute("SELECT setval('notify_user_key_seq', %s)", [users + 1])
    per_day = max(args.fanout, args.rows // args.days // args.fanout * args.fanout)
    step = 86_400 / per_day  # seconds between rows within a day
    for day in range(args.days):
        k0 = day * per_day
        k1 = args.rows if day == args.days - 1 else min(args.rows, k0 + per_day)
        if k0 >= k1:
            break
        start = first + timedelta(days=day)
        params = {"f": args.fanout, "start": start, "k0": k0, "step": step, "u": users}
        execute(
            "INSERT INTO notify_event (id, event_id, type, title, body, data, source, created_at) "
            "SELECT e, gen_random_uuid(), 'order.shipped', 'Order ' || e || ' has shipped', "
            "'Your parcel left our warehouse and should arrive within two working days.', "
            "jsonb_build_object('order_id', e, 'url', '/orders/' || e, 'items', e %% 7), 'shop', "
            "%(start)s + ((e * %(f)s - %(k0)s) * %(step)s) * interval '1 second' "
            "FROM generate_series(%(e0)s, %(e1)s) AS e",
            {**params, "e0": k0 // args.fanout, "e1": (k1 - 1) // args.fanout},
        )
        execute(
            "INSERT INTO notify_recipient (user_key, day, seq, event_ref, read_at) "
            "SELECT k %% %(u)s + 1, (c AT TIME ZONE 'UTC')::date, k / %(u)s + 1, k / %(f)s, "
            "CASE WHEN random() < 0.8 THEN c + interval '1 hour' END "
            "FROM generate_series(%(k0)s, %(k1)s) AS k, LATERAL (SELECT %(start)s + "
            "((k / %(f)s * %(f)s - %(k0)s) * %(step)s) * interval '1 second' AS c) AS t",
            {**params, "k1": k1 - 1},
        )
    # One user with 10,000 unread, spread over the days.
    execute(
        "INSERT INTO notify_recipient (user_key, day, seq, event_ref, read_at) "
        "SELECT %s, ((%s + (s * %s) * interval '1 second') AT TIME ZONE 'UTC')::date, s, 0, NULL "
        "FROM generate_series(1, %s) s",
        [users + 1, first, args.days * 86_000 / HEAVY_UNREAD, HEAVY_UNREAD],
    )
    execute(
        "SELECT setval(pg_get_serial_sequence('notify_event', 'id'), max(id)) FROM notify_event"
    )
    execute("VACUUM (ANALYZE) notify_recipient")
    execute("VACUUM (ANALYZE) notify_event")
    execute("VACUUM (ANALYZE) notify_user_sequence")


def table_bytes(parent: str) -> dict[str, int]:
    """Heap and index bytes over a partitioned table's partitions."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT coalesce(sum(pg_table_size(c.oid)), 0), "
            "coalesce(sum(pg_indexes_size(c.oid)), 0) FROM pg_inherits i "
            "JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent "
            "WHERE p.relname = %s",
            [parent],
        )
        heap, indexes = cursor.fetchone()
        cursor.execute(
            "SELECT ip.relname, sum(pg_relation_size(ic.oid)) FROM pg_inherits i "
            "JOIN pg_class p ON p.oid = i.inhparent JOIN pg_index x ON x.indrelid = i.inhrelid "
            "JOIN pg_class ic ON ic.oid = x.indexrelid "
            "JOIN pg_inherits ii ON ii.inhrelid = x.indexrelid "
            "JOIN pg_class ip ON ip.oid = ii.inhparent WHERE p.relname = %s GROUP BY ip.relname",
            [parent],
        )
        per_index = {name: int(size) for name, size in cursor.fetchall()}
    return {"heap": int(heap), "indexes": int(indexes), **per_index}


def sizes() -> dict[str, Any]:
    rows = scalar("SELECT count(*) FROM notify_recipient")
    events = scalar("SELECT count(*) FROM notify_event")
    recipient = table_bytes("notify_recipient")
    event = table_bytes("notify_event")
    return {
        "recipient_rows": rows,
        "events": events,
        "recipient_bytes": recipient,
        "event_bytes": event,
        "bytes_per_recipient_row": round((recipient["heap"] + recipient["indexes"]) / rows, 1),
        "bytes_per_recipient_row_heap": round(recipient["heap"] / rows, 1),
        "bytes_per_event": round((event["heap"] + event["indexes"]) / events, 1),
        "unread_fraction": round(
            scalar("SELECT avg((read_at IS NULL)::int) FROM notify_recipient"), 3
        ),
    }


def reads(args: argparse.Namespace) -> dict[str, Any]:
    from notifications import selectors
    from service import lifecycle

    # The collector as a server process has it after start-up (service/asgi.py):
    # without this, about 3 reads in 1,000 here also paid a full collection
    # walking all of Django's objects (35-45 ms each), which a server never does.
    lifecycle.tune_gc()

    users = max(1, args.rows // args.rows_per_user)
    rng = random.Random(7)  # noqa: S311 - which users to read, not a secret

    def user() -> str:
        return f"user-{rng.randrange(users)}"

    def since_500() -> None:
        who = user()
        last = selectors.sequence_state(user_id=who).last_id
        found = selectors.notifications_after(user_id=who, after=max(0, last - 500), limit=500)
        assert len(found) == min(500, last)

    def first_page() -> None:
        assert selectors.notifications_page(user_id=user(), limit=50).results

    def unread_10k() -> None:
        assert selectors.unread_count(user_id=HEAVY_USER) == HEAVY_UNREAD

    from notifications import wire_sql

    plans = {
        "since_500": (
            wire_sql.statement(where="AND seq > %s", descending=False),
            ["user-1", 0, 500],
        ),
        "first_page_50": (wire_sql.statement(where="", descending=True), ["user-1", 51]),
    }
    return {
        "plans": {name: explain(statement) for name, statement in plans.items()},
        **{
            name: latency(func, args.samples)
            for name, func in (
                ("since_500", since_500),
                ("first_page_50", first_page),
                ("unread_count_10k", unread_10k),
            )
        },
    }


def explain(statement: tuple[str, list[Any]]) -> list[str]:
    """The plan's node lines (without the per-partition detail)."""
    from django.db import connection

    sql, params = statement
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) " + sql, params)
        lines = [row[0] for row in cursor.fetchall()]
    return [line for line in lines if "->" in line and "_p20" not in line][:12]


def latency(func: Callable[[], None], samples: int) -> dict[str, float]:
    for _ in range(min(50, samples)):  # warm the connection and the plan cache
        func()
    times: list[float] = []
    for _ in range(samples):
        start = time.perf_counter()
        func()
        times.append((time.perf_counter() - start) * 1000)
    times.sort()
    return {
        "p50": round(times[len(times) // 2], 2),
        "p99": round(times[int(len(times) * 0.99) - 1], 2),
        "max": round(times[-1], 2),
    }


def compaction() -> dict[str, Any]:
    """The purge command's second step: each closed day's recipient indexes
    rebuilt once (every day but today here)."""
    from notifications.services import notifications_compact

    before = scalar("SELECT pg_current_wal_lsn()")
    start = time.perf_counter()
    rebuilt = notifications_compact()
    seconds = time.perf_counter() - start
    wal = scalar("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s)", [before])
    return {"partitions": len(rebuilt), "seconds": round(seconds, 2), "wal_bytes": int(wal)}


def legacy_sizes(args: argparse.Namespace) -> dict[str, Any]:
    """The pre-0002 schema (content on every recipient row), same shape."""
    execute(
        "CREATE TABLE bench_legacy (id bigserial PRIMARY KEY, user_id varchar(128) NOT NULL, "
        "seq bigint NOT NULL, event_id uuid NOT NULL, type varchar(100) NOT NULL, "
        "title varchar(200) NOT NULL, body text NOT NULL, data jsonb NOT NULL, "
        "source varchar(100) NOT NULL, created_at timestamptz NOT NULL, read_at timestamptz)"
    )
    execute("CREATE UNIQUE INDEX ON bench_legacy (user_id, seq)")
    execute("CREATE INDEX ON bench_legacy (user_id, seq) WHERE read_at IS NULL")
    execute("CREATE INDEX ON bench_legacy (created_at)")
    execute(
        "INSERT INTO bench_legacy (user_id, seq, event_id, type, title, body, data, source, "
        "created_at, read_at) SELECT s.user_id, r.seq, e.event_id, e.type, e.title, e.body, "
        "e.data, e.source, e.created_at, r.read_at FROM notify_recipient r "
        "JOIN notify_user_sequence s ON s.key = r.user_key "
        "JOIN notify_event e ON e.id = r.event_ref "
        "AND e.created_at >= (r.day::timestamp AT TIME ZONE 'UTC') "
        "AND e.created_at < ((r.day + 1)::timestamp AT TIME ZONE 'UTC') "
        "ORDER BY r.day LIMIT %s",
        [args.legacy_rows],
    )
    execute("VACUUM (ANALYZE) bench_legacy")
    rows = scalar("SELECT count(*) FROM bench_legacy")
    total = scalar("SELECT pg_total_relation_size('bench_legacy')")
    execute("DROP TABLE bench_legacy")
    return {"rows": rows, "bytes_per_row": round(total / rows, 1)}


if __name__ == "__main__":
    raise SystemExit(main())
