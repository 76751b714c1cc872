"""The publish writer's CPU per group, on a private durable PostgreSQL.

    .venv/bin/python -m bench.writer_cost --groups 1500 --runs 3

Commits single-recipient groups in a row the way the writer thread does
(``notifications_publish_many`` inside the writer's connection wrapper, no
HTTP, no Redis, pushes not sent; with ``--entry rated`` what the writer
thread runs per group, ``notifications_publish_rated``: the rate limit on
local buckets, then the plain group's one statement in autocommit where the
tree has it, else the transaction) and prints the process's CPU per group
(``time.process_time``: every thread, psycopg's pool threads included),
the writer thread's own (``time.thread_time``) and the wall time, in ms, one
JSON object per run. At 500 POSTs/s each POST commits in a group of one, so
this is the figure the ``rate`` scenario's server CPU follows; it is far
less disturbed by other work on the machine than an end-to-end run
(docs/performance.md, "The writer's cost per group"). ``--tree DIR``
measures another checkout's writer (``git worktree add --detach ../baseline
main``), for an A/B with this tree's.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))


def _setup(database_url: str, entry: str) -> Callable[[], object]:
    os.environ.update(
        NOTIFY_PUBLISH_RATE="1000000/s",  # --entry rated: never limited
        DATABASE_URL=database_url,
        DJANGO_SETTINGS_MODULE="service.settings",
        DEBUG="0",  # DEBUG's query log would be measured too
        DJANGO_SECRET_KEY=secrets.token_urlsafe(40),
        JWT_SECRET=secrets.token_urlsafe(40),
        NOTIFY_API_KEYS="bench:" + secrets.token_urlsafe(40),
        ALLOWED_HOSTS="localhost",
    )
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from notifications import db, delivery, publishing
    from notifications.publishing import Publication

    delivery.push_notifications = lambda *_a, **_k: None
    wrap: Any = getattr(db, "with_kept_connection", db.with_fresh_connections)
    count = iter(range(1 << 62))

    def group() -> object:
        n = next(count)
        publication = Publication(
            source="bench",
            recipients=[f"user-{n % 1000}"],
            type="order.shipped",
            title="Your order shipped",
            body="Parcel 1Z999 left the warehouse",
            data={"order": n, "carrier": "ups"},
        )
        if entry == "rated":
            return publishing.notifications_publish_rated(publications=[publication])
        return publishing.notifications_publish_many(publications=[publication])

    commit: Callable[[], object] = wrap(group)
    return commit


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", type=int, default=1500, help="groups per run")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--tree", type=Path, default=None, help="another checkout's code")
    parser.add_argument(
        "--entry",
        choices=("many", "rated"),
        default="many",
        help="many: the transaction itself; rated: the writer thread's whole group",
    )
    args = parser.parse_args(argv)
    from tests.support.servers import PostgresServer

    if args.tree is not None:
        sys.path.insert(0, str(args.tree.resolve()))

    with PostgresServer(durable=True) as server:
        commit = _setup(server.url, args.entry)
        print(json.dumps({"writer": commit.__qualname__}), flush=True)
        for _ in range(args.warmup):
            commit()
        for _ in range(args.runs):
            cpu, own, wall = time.process_time(), time.thread_time(), time.perf_counter()
            for _ in range(args.groups):
                commit()
            per = 1000 / args.groups
            print(
                json.dumps(
                    {
                        "groups": args.groups,
                        "cpu_ms_per_group": round((time.process_time() - cpu) * per, 3),
                        "writer_thread_ms_per_group": round((time.thread_time() - own) * per, 3),
                        "wall_ms_per_group": round((time.perf_counter() - wall) * per, 3),
                    }
                ),
                flush=True,
            )
        from django.db import connections

        connections.close_all()


if __name__ == "__main__":
    main()
