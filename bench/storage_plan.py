"""Where a ``since`` replay's time goes on the server: EXPLAIN (ANALYZE,
BUFFERS, TIMING OFF) of the statement the service runs (wire_sql) for
random users of a database ``bench.storage`` filled (docs/scaling.md).
The service runs it inside ``notify_wire_page`` (migration 0007), which
keeps its plan per connection; EXPLAIN of the inline text plans it every
time, so its planning time is what the function saves.

    .venv/bin/python -m bench.storage --rows 20000000 --database-url URL
    .venv/bin/python -m bench.storage_plan --database-url URL --users 20

Per user, the planning and execution times and the buffers of the whole
statement, of the rows (the ``Limit`` over the recipient partitions) and of
the event probes (the inner ``Limit``, one loop per row); each user is
explained twice, so the second figure is with every page in shared
buffers. Prints one JSON object: the medians and every sample.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import statistics
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from bench.django_env import setup_django  # noqa: E402 - after the path above

_TIME = re.compile(r"^(Planning|Execution) Time: ([\d.]+) ms")
_BUFFERS = re.compile(r"Buffers: shared(?: hit=(\d+))?(?: read=(\d+))?")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.storage_plan", description=__doc__)
    parser.add_argument("--database-url", required=True, help="filled by bench.storage")
    parser.add_argument("--users", type=int, default=20, help="users to explain")
    parser.add_argument("--all-users", type=int, default=20_000, help="bench.storage's users")
    args = parser.parse_args(argv)
    setup_django(args.database_url)
    rng = random.Random(3)  # noqa: S311 - which users to read, not a secret
    samples: dict[str, list[dict[str, float]]] = {"first": [], "again": []}
    for _ in range(args.users):
        who = f"user-{rng.randrange(args.all_users)}"
        samples["first"].append(explain(who))
        samples["again"].append(explain(who))
    result = {
        name: {key: statistics.median(s[key] for s in found) for key in found[0]}
        for name, found in samples.items()
    }
    print(json.dumps({"medians": result, "samples": samples}, indent=2))
    return 0


def explain(user_id: str) -> dict[str, float]:
    """The since-500 statement's times (ms) and buffers for ``user_id``."""
    from django.db import connection

    from notifications import wire_sql

    with connection.cursor() as cursor:
        cursor.execute("SELECT last_id FROM notify_user_sequence WHERE user_id = %s", [user_id])
        last = cursor.fetchone()[0]
        sql = wire_sql.statement(where="AND seq > %s", descending=False)
        cursor.execute(
            "EXPLAIN (ANALYZE, BUFFERS, TIMING OFF, COSTS OFF) " + sql,
            [user_id, max(0, last - 500), 500],
        )
        lines = [row[0] for row in cursor.fetchall()]
    return summary(lines)


def summary(lines: list[str]) -> dict[str, float]:
    found: dict[str, float] = {}
    nodes: list[str] = []  # the plan's node of each Buffers line
    for line in lines:
        time = _TIME.match(line)
        if time:
            found[time.group(1).lower() + "_ms"] = float(time.group(2))
        elif "->" in line or not line.startswith(" "):
            nodes.append(line)
        elif "Buffers:" in line and nodes:
            buffers = _BUFFERS.search(line)
            if buffers is None:
                continue
            total = sum(int(group or 0) for group in buffers.groups())
            read = int(buffers.group(2) or 0)
            node = nodes[-1]
            if "buffers" not in found and not node.startswith(" "):
                found["buffers"], found["buffers_read"] = total, read
            elif "Limit" in node and "loops=1)" in node and "rows_buffers" not in found:
                found["rows_buffers"] = total
            elif "Limit" in node and "rows_buffers" in found and "event_buffers" not in found:
                found["event_buffers"] = total
    return found


if __name__ == "__main__":
    raise SystemExit(main())
