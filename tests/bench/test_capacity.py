"""``python -m bench capacity`` and the Redis ``INFO`` readings under it.

Against real redis-server processes (and, for the command, a real
deployment: uvicorn, PostgreSQL, Redis). Only the accounting is asserted,
never a speed.
"""

from __future__ import annotations

from typing import Any

import pytest
import redis

from bench import redisinfo
from bench.capacity_lines import MEDIAN_FIELDS, cell_line
from tests.bench.test_bench import run_bench
from tests.support.servers import RedisServer

# Real benchmarks in small sizes, a few minutes in all: `make test-slow`.
pytestmark = pytest.mark.bench

# A Lua loop long enough to show in used_cpu_user at any load.
BUSY_SCRIPT = "local x = 0 for i = 1, 3000000 do x = x + i end return 1"


def test_parse_address_takes_host_port_or_a_url() -> None:
    assert redisinfo.parse_address("127.0.0.1:6379") == ("127.0.0.1", 6379)
    assert redisinfo.parse_address("redis://user:pw@cache.internal:7000/0") == (
        "cache.internal",
        7000,
    )
    with pytest.raises(ValueError, match="HOST:PORT"):
        redisinfo.parse_address("cache.internal")


def test_info_delta_counts_the_phase_commands_and_cpu(
    fresh_redis_server: RedisServer,
) -> None:
    address = f"{fresh_redis_server.host}:{fresh_redis_server.port}"
    before = redisinfo.sample_all([address])
    with fresh_redis_server.client() as client:
        for i in range(500):
            client.publish("capacity-test", str(i))
        client.eval(BUSY_SCRIPT, 0)
    after = redisinfo.sample_all([address])

    out = redisinfo.delta(before, after, delivered=500)

    (node,) = out["nodes"]
    assert node["role"] == "master"
    # Exactly the phase's commands: our own INFO readings are not among them.
    assert node["calls"] == {"publish": 500, "eval": 1}
    assert node["commands"] == 501
    assert node["cpu_s"] > 0
    # 500 PUBLISH commands of at least 30 bytes each read from the client.
    assert node["net_in_bytes"] >= 500 * 30
    assert out["masters"] == 1
    assert out["replicas"] == 0
    assert out["master_commands_per_delivery"] == pytest.approx(501 / 500, abs=1e-3)
    assert out["master_calls_per_delivery"]["publish"] == 1.0
    assert out["cpu_s_per_1000_deliveries"] == pytest.approx(node["cpu_s"] * 2, abs=1e-3)


def test_info_of_a_node_that_does_not_answer_is_an_error_not_a_failed_run(
    fresh_redis_server: RedisServer,
) -> None:
    with pytest.raises(redis.ConnectionError):
        redisinfo.sample("127.0.0.1:1", timeout=1.0)
    # During a load run the phase loses its Redis figures; the run goes on.
    alive = f"{fresh_redis_server.host}:{fresh_redis_server.port}"
    assert redisinfo.try_sample_all([alive, "127.0.0.1:1"]) is None
    assert redisinfo.try_sample_all([alive]) is not None


def _run(ok: bool, per_s: float, cpu: float) -> dict[str, Any]:
    fields = dict.fromkeys(MEDIAN_FIELDS)
    return {
        **fields,
        "label": "",
        "topology": "standalone",
        "processes": 2,
        "scenario": "unicast",
        "redis_masters": 1,
        "redis_replicas": 0,
        "redis_idle_cpu_pct": 0.1,
        "ok": ok,
        "deliveries_per_s": per_s,
        "server_cpu_ms_per_delivery": cpu,
        "load_avg_after": [3.0, 2.0, 1.0],
        "run_id": f"r{per_s:g}",
    }


def test_a_cell_is_the_median_of_the_runs_that_lost_nothing() -> None:
    cell = cell_line([_run(True, 100, 0.5), _run(False, 9000, 0.01), _run(True, 300, 0.7)])
    assert cell["runs"] == 3
    assert cell["ok_runs"] == 2
    assert cell["deliveries_per_s"] == 200
    assert cell["server_cpu_ms_per_delivery"] == 0.6
    assert cell["redis_cpu_s_per_1000_deliveries"] is None  # no run had the figure
    assert cell["load_avg_1m"] == [3.0, 3.0, 3.0]


@pytest.mark.live
@pytest.mark.timeout(300)  # a PostgreSQL, Redis and a process started: ~1 min loaded
def test_capacity_smallest_cell_measures_every_tier() -> None:
    """One process on standalone Redis and PostgreSQL, the quick unicast scenario once."""
    lines = run_bench(
        [
            "capacity", "--procs", "1", "--topologies", "standalone", "--scenarios", "unicast",
            "--repeat", "1", "--quick", "--no-results",
        ],
        timeout=280,
    )  # fmt: skip
    runs = [x for x in lines if x.get("bench") == "capacity-run"]
    cells = [x for x in lines if x.get("bench") == "capacity"]
    assert len(runs) == 1
    assert len(cells) == 1
    (run,), (cell,) = runs, cells
    assert run["ok"] is True
    assert run["delivered"] == 1000  # the quick suite's unicast: 1,000 POSTs
    assert run["lost"] == 0
    assert run["processes"] == 1
    assert run["deliveries_per_s_per_process"] == run["deliveries_per_s"]
    assert run["redis_masters"] == 1
    assert run["redis_replicas"] == 0
    # Each delivery is one PUBLISH to the recipient's group, whatever else runs.
    assert run["redis_master_calls_per_delivery"]["publish"] == 1.0
    assert run["redis_cpu_s_per_1000_deliveries"] > 0
    assert run["server_cpu_ms_per_delivery"] > 0
    assert run["postgres_cpu_ms_per_delivery"] > 0
    assert run["postgres_wal_bytes_per_delivery"] > 0
    assert len(run["load_avg_before"]) == 3
    assert run["server_log_errors"] == 0
    assert cell["ok_runs"] == cell["runs"] == 1
    assert cell["deliveries_per_s"] == run["deliveries_per_s"]
    assert cell["topology"] == "standalone"
