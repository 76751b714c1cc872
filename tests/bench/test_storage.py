"""``python -m bench.storage`` on a small real run (its own durable
PostgreSQL): the output's shape, and the last step's publishes around the
purge of a day, every one of which must succeed. No speed is asserted."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.support.servers import REPO_ROOT

pytestmark = pytest.mark.bench

SMALL = ["--rows", "20000", "--rows-per-user", "100", "--samples", "20", "--legacy-rows", "0"]


def test_storage_measures_reads_and_publishes_while_a_day_is_purged() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.storage", *SMALL],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    result = json.loads(done.stdout)
    for read in ("since_500", "first_page_50", "unread_count_10k"):
        assert 0 < result["reads_ms"][read]["p50"] <= result["reads_ms"][read]["max"]
    purge = result["purge_one_day"]
    # One day of ten, 20,000 rows over 10 days (the heavy user's aside).
    assert 1_000 <= purge["rows"] <= 4_000
    windows = purge["publishing"]
    assert all(windows[name]["count"] > 0 for name in ("before", "during", "after"))
