"""Publishing while a day is purged (bench.storage's last step).

Issue #15 asks that purging a day "does not slow publishing, measured while
publishing". A thread publishes through the service's own entry
(``services.notifications_publish``: the rate limit, the writer's group,
the commit, the push) to ``fanout`` random users of the filled database, one
publish after the other, from ``settle`` seconds before the purge until
``settle`` seconds after it; each publish's latency is then counted as
before, during (it overlapped the purge) or after. The users are the ones
whose rows the purged day holds, so the purge's ``purged_through`` update and
the publishes' ``last_id`` update meet on the same sequence rows.
"""

from __future__ import annotations

import random
import threading
import time
from typing import Any

from bench.stats import summary


def purge_while_publishing(
    *, older_than_days: int, users: int, fanout: int, settle: float = 3.0
) -> dict[str, Any]:
    """The purge's rows, seconds and WAL, and the publishes around it."""
    from django.db import connection

    from notifications.services import notifications_purge

    spans: list[tuple[float, float]] = []
    stop = threading.Event()
    failures: list[BaseException] = []
    publisher = threading.Thread(
        target=_publish_until, args=(stop, spans, failures, users, fanout), daemon=True
    )
    publisher.start()
    time.sleep(settle)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_current_wal_lsn()")
        (lsn,) = cursor.fetchone() or (None,)
    start = time.perf_counter()
    removed = notifications_purge(older_than_days=older_than_days)
    end = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s)", [lsn])
        (wal,) = cursor.fetchone() or (0,)
    time.sleep(settle)
    stop.set()
    publisher.join()
    if failures:
        raise failures[0]
    return {
        "rows": removed,
        "seconds": round(end - start, 2),
        # WAL of the purge and of the publishes meanwhile (both write it).
        "wal_bytes": int(wal),
        "publishing": {
            "fanout": fanout,
            "before": _window(spans, lambda s, e: e < start, start - settle, start),
            "during": _window(spans, lambda s, e: s <= end and e >= start, start, end),
            "after": _window(spans, lambda s, e: s > end, end, end + settle),
        },
    }


def _publish_until(
    stop: threading.Event,
    spans: list[tuple[float, float]],
    failures: list[BaseException],
    users: int,
    fanout: int,
) -> None:
    from django.db import connections

    from notifications.services import notifications_publish

    rng = random.Random(13)  # noqa: S311 - which users to publish to, not a secret
    try:
        while not stop.is_set():
            recipients = [f"user-{rng.randrange(users)}" for _ in range(fanout)]
            begun = time.perf_counter()
            notifications_publish(
                source="bench-purge", recipients=recipients, type="bench.purge", title="t"
            )
            spans.append((begun, time.perf_counter()))
    except BaseException as error:  # handed to the main thread, raised there
        failures.append(error)
    finally:
        connections.close_all()


def _window(
    spans: list[tuple[float, float]], inside: Any, since: float, until: float
) -> dict[str, Any]:
    """Publishes/s over the window and the latencies of those in it (ms)."""
    took = [(end - begun) * 1000 for begun, end in spans if inside(begun, end)]
    return {"per_second": round(len(took) / max(until - since, 1e-3), 1), **summary(took)}
