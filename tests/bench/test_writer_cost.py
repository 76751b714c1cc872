"""``python -m bench.writer_cost`` on a small real run: its output's shape,
for the transaction (``--entry many``) and the writer's whole group
(``--entry rated``). No speed is asserted."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.support.servers import REPO_ROOT

pytestmark = pytest.mark.bench

SMALL = ["--groups", "20", "--runs", "2", "--warmup", "5"]


@pytest.mark.parametrize("entry", ["many", "rated"])
def test_writer_cost_prints_a_cost_per_group(entry: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.writer_cost", "--entry", entry, *SMALL],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert "writer" in lines[0]
    runs = lines[1:]
    assert len(runs) == 2
    for run in runs:
        assert run["groups"] == 20
        assert run["wall_ms_per_group"] > 0
        assert 0 < run["writer_thread_ms_per_group"] <= run["cpu_ms_per_group"] + 1e-3
