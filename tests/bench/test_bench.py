"""The benchmark tool (``python -m bench``) on small real runs.

Only the shape and the correctness numbers are asserted (nothing lost,
nothing twice, percentiles ordered), never a speed: these machines are
shared and slow.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from bench.cluster import Cluster, image_uvicorn_args, scan_log
from bench.options import PRESENCE_HEARTBEAT_S
from bench.pyspy import shares
from bench.stats import percentile, summary
from tests.support.servers import REPO_ROOT, LiveServerFactory, RedisServer

# Real benchmarks in small sizes, a few minutes in all: `make test-slow`.
pytestmark = pytest.mark.bench

LATENCY_KEYS = {"count", "min", "mean", "p50", "p90", "p99", "max"}
TOP_KEYS = {
    "bench", "run_id", "sweep_id", "time", "label", "command", "scenario", "mode", "params",
    "target", "sockets", "posts", "deliveries", "latency_ms", "timing", "memory",
    "server_cpu_pct", "server_metrics", "loader", "server_logs", "servers_crashed", "ok",
}  # fmt: skip


def run_bench(
    args: Sequence[str],
    *,
    timeout: float = 90,
    exit_code: int = 0,
    env: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """``python -m bench ARGS`` (``env`` added to ours); returns the JSON lines
    it printed on stdout."""
    proc = subprocess.run(
        [sys.executable, "-m", "bench", *args],
        cwd=REPO_ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert proc.returncode == exit_code, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert lines, proc.stderr
    return lines


def assert_clean_delivery(line: dict[str, Any], *, expected: int) -> None:
    assert set(line) >= TOP_KEYS
    assert line["ok"] is True
    assert line["sockets"]["failed"] == 0
    assert line["sockets"]["opened"] == line["params"]["sockets"]
    posts = line["posts"]
    assert posts["non_202"] == {}
    assert posts["accepted"] == posts["sent"]
    d = line["deliveries"]
    assert d["expected"] == expected
    assert d["delivered"] == expected
    assert d["lost"] == 0
    assert d["duplicates"] == 0
    assert d["unexpected"] == 0
    lat = line["latency_ms"]
    assert set(lat) == LATENCY_KEYS
    assert lat["count"] == expected
    assert 0 <= lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]
    assert posts["per_s"] > 0
    assert d["per_s"] > 0
    assert set(posts["publish_ms"]) == LATENCY_KEYS
    loader = line["loader"]
    assert loader["cpu_s"] >= 0
    assert loader["cpu_pct"] is not None


# --------------------------------------------------------------------------- pure helpers


def test_percentile_nearest_rank() -> None:
    data = [float(i) for i in range(1, 101)]
    assert percentile(data, 50) == 50
    assert percentile(data, 99) == 99
    assert percentile(data, 100) == 100
    assert percentile([], 50) is None
    s = summary([3.0, 1.0, 2.0])
    assert (s["min"], s["p50"], s["max"], s["count"]) == (1.0, 2.0, 3.0, 3)


def test_scan_log_counts_errors_and_500s() -> None:
    text = "\n".join(
        [
            '{"level": "INFO", "logger": "uvicorn.error", "message": "connection open"}',
            '{"level": "ERROR", "logger": "django.request", "message": '
            '"Internal Server Error: /api/v1/notifications", "exc": "Traceback (most recent"}',
            '{"level": "WARNING", "logger": "x", "message": "channel layer push failed"}',
            "Traceback (most recent call last):",
        ]
    )
    scan = scan_log(text)
    assert (scan.errors, scan.warnings, scan.http_500, scan.tracebacks) == (1, 1, 1, 2)
    assert scan.samples


# --------------------------------------------------------------------------- live runs


@pytest.mark.live
def test_spawn_unicast_max_rate(tmp_path: Path) -> None:
    results = tmp_path / "results.jsonl"
    (line,) = run_bench(
        [
            "run", "--spawn", "1", "--scenario", "unicast",
            "--sockets", "12", "--count", "60", "--concurrency", "4",
            "--drain-timeout", "10", "--results", str(results), "--label", "pytest",
            "--keep-logs", str(tmp_path / "logs"),
        ]
    )  # fmt: skip
    assert_clean_delivery(line, expected=60)
    assert line["command"] == "run"
    assert line["mode"] == "max"
    assert line["label"] == "pytest"
    assert line["target"]["kind"] == "spawn"
    assert line["target"]["redis_layer"] == "pubsub"
    assert len(line["target"]["urls"]) == 1
    assert line["params"]["count"] == 60
    assert line["params"]["concurrency"] == 4
    memory = line["memory"]
    assert len(memory["server_rss_kib_before"]) == 1
    assert memory["server_rss_kib_after_open"][0] > 0
    # Read 1 s after opening, before two presence heartbeats: labelled early,
    # never reported as the memory per socket.
    assert memory["past_two_heartbeats"] is False
    assert memory["kib_per_socket"] is None
    assert memory["kib_per_socket_early"] is not None
    # The image's configuration: its CMD, with the access log on.
    assert line["target"]["config"] == "image"
    args = line["target"]["uvicorn_args"]
    assert "--no-access-log" not in args
    assert args == image_uvicorn_args()
    kept = (tmp_path / "logs").glob("*-server0.log")
    log = "".join(path.read_text() for path in kept)
    assert "POST /api/v1/notifications" in log and "202" in log, log[-2000:]
    assert line["server_logs"]["total"]["errors"] == 0
    assert line["server_logs"]["total"]["http_500"] == 0
    assert line["servers_crashed"] == []
    assert line["server_metrics"]["accepted"] >= 60
    # The same line was appended to the results file.
    saved = [json.loads(x) for x in results.read_text().splitlines()]
    assert saved == [line]


@pytest.mark.live
def test_spawn_on_a_redis_cluster(tmp_path: Path) -> None:
    """``--redis-cluster``: the run goes through two processes on a 3+3 Redis Cluster."""
    (line,) = run_bench(
        [
            "run", "--spawn", "2", "--redis-cluster", "--scenario", "unicast",
            "--sockets", "12", "--count", "60", "--concurrency", "4",
            "--drain-timeout", "10", "--results", str(tmp_path / "r.jsonl"),
        ]
    )  # fmt: skip
    assert_clean_delivery(line, expected=60)
    assert line["target"]["redis_topology"] == "cluster: 3 masters + 3 replicas"
    assert line["target"]["redis_layer"] == "sharded pubsub"
    # INFO from every node over the phase: one SPUBLISH per delivery, on the masters.
    info = line["redis_info"]
    assert (info["masters"], info["replicas"]) == (3, 3)
    assert len(info["nodes"]) == 6
    assert info["master_calls_per_delivery"]["spublish"] == 1.0
    assert line["server_logs"]["total"]["errors"] == 0
    assert line["servers_crashed"] == []


@pytest.mark.live
def test_spawn_unicast_over_sse() -> None:
    (line,) = run_bench(
        [
            "run", "--spawn", "1", "--scenario", "unicast", "--transport", "sse",
            "--sockets", "12", "--count", "60", "--concurrency", "4", "--drain-timeout", "10",
        ]
    )  # fmt: skip
    assert_clean_delivery(line, expected=60)
    assert line["params"]["transport"] == "sse"
    assert line["server_metrics"]["sockets_open"] == 12  # streams count as connections
    assert line["server_logs"]["total"]["errors"] == 0


@pytest.mark.live
def test_url_mode_batch_rate_and_sweep(
    live_server_factory: LiveServerFactory, redis_server: RedisServer, tmp_path: Path
) -> None:
    api_key = secrets.token_urlsafe(24)
    jwt_secret = secrets.token_urlsafe(36)
    server = live_server_factory(
        {
            "DEBUG": "false",
            "DJANGO_SECRET_KEY": secrets.token_urlsafe(40),
            "NOTIFY_API_KEYS": f"loadtest:{api_key}",
            "JWT_SECRET": jwt_secret,
            "DATABASE_URL": f"sqlite:///{(tmp_path / 'db.sqlite3').resolve()}",
            "REDIS_URL": redis_server.url,
            "NOTIFY_REDIS_PREFIX": f"bench{secrets.token_hex(4)}",
            "NOTIFY_PUBLISH_RATE": "100000/s",
        }
    )
    url = ["--url", server.url, "--server-pid", str(server.pid), "--no-results"]
    # The secrets as options ("=" form: a random secret may start with "-",
    # which argparse would take for an option; a CI failure once) ...
    target = [*url, f"--api-key={api_key}", f"--jwt-secret={jwt_secret}"]
    # ... or, kept off the command line, in the environment.
    secret_env = {"BENCH_API_KEY": api_key, "BENCH_JWT_SECRET": jwt_secret}

    # Batch, max rate, two loader processes (each publishes to its own sockets).
    (batch,) = run_bench(
        ["run", "--scenario", "batch", "--sockets", "20", "--batch", "5",
         "--count", "12", "--concurrency", "2", "--workers", "2", *url],
        env=secret_env,
    )  # fmt: skip
    assert_clean_delivery(batch, expected=12 * 5)
    assert batch["target"]["kind"] == "url"
    assert batch["target"]["urls"] == [server.url]
    assert batch["loader"]["workers"] == 2
    assert len(batch["loader"]["worker_cpu_s"]) == 2
    assert batch["server_logs"] is None
    assert batch["memory"]["server_rss_kib_after_open"][0] > 0

    # A sweep in rate mode: one line per rate, and the plot.
    plot = tmp_path / "sweep.png"
    lines = run_bench(
        ["sweep", "--sockets", "10", "--rates", "10,20", "--duration", "1",
         "--plot", str(plot), *target]
    )  # fmt: skip
    assert [line["params"]["rate"] for line in lines] == [10.0, 20.0]
    assert len({line["sweep_id"] for line in lines}) == 1
    for line, rate in zip(lines, (10, 20), strict=True):
        assert line["mode"] == "rate"
        assert_clean_delivery(line, expected=rate)
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # Idle sockets: memory only.
    (idle,) = run_bench(["run", "--scenario", "connect", "--sockets", "15", "--hold", "0.2",
                         "--settle", "0.2", *target])  # fmt: skip
    assert idle["mode"] == "idle"
    assert idle["sockets"]["opened"] == 15
    assert idle["posts"]["sent"] == 0
    assert idle["memory"]["kib_per_socket"] is None  # --settle 0.2: before the heartbeats
    assert idle["memory"]["kib_per_socket_early"] is not None
    assert idle["ok"] is True
    assert idle["idle"] is None  # the CPU summary is --scenario idle's

    # Idle sockets held: the servers' CPU meanwhile (issue #16's idle target).
    (held,) = run_bench(["run", "--scenario", "idle", "--sockets", "15", "--hold", "1",
                         "--settle", "0.2", *target])  # fmt: skip
    assert held["mode"] == "idle" and held["ok"] is True
    assert held["params"]["hold"] == 1.0
    assert held["timing"]["phase_s"] >= 1.0
    (pct,) = held["server_cpu_pct"]
    (cpu_s,) = held["server_cpu_s"]
    assert held["idle"] == {"hold_s": 1.0, "sockets_per_process": 15, "cpu_pct_of_one_core": pct}
    assert cpu_s is not None and 0 <= cpu_s <= held["timing"]["phase_s"]


def test_suite_repeats_a_scenario_and_summarises_its_median() -> None:
    """The deflate-offered memory scenario, read past two presence heartbeats."""
    lines = run_bench(
        ["suite", "--quick", "--repeat", "2", "--only", "deflate", "--no-results",
         "--hold", "0.5", "--sockets", "50"],
        timeout=300,
    )  # fmt: skip
    runs = [line for line in lines if line["bench"] != "suite-summary"]
    (summary,) = [line for line in lines if line["bench"] == "suite-summary"]
    assert len(runs) == 2
    assert all(run["scenario"] == "connect" and run["ok"] for run in runs)
    for run in runs:
        assert run["params"]["compression"] == "deflate"
        assert run["memory"]["settle_s"] > 2 * PRESENCE_HEARTBEAT_S
        assert run["memory"]["past_two_heartbeats"] is True
    figures = [run["memory"]["kib_per_socket"] for run in runs]
    assert summary["values"] == figures
    assert summary["median"] == pytest.approx(sum(figures) / 2)
    assert summary["completed"] == 2 and summary["all_ok"] is True
    assert summary["target"] == "<= 20"
    assert summary["met"] is (summary["median"] <= 20)
    assert summary["run_ids"] == [run["run_id"] for run in runs]


def test_suite_summary_reads_nested_metrics_and_judges_the_median() -> None:
    from bench.suite import Scenario, Target, summary_line

    scenario = Scenario("x", [], Target("deliveries.per_s", ">=", 100))
    lines = [{"deliveries": {"per_s": v}, "ok": True, "run_id": str(v)} for v in (90, 120, 150)]
    summary = summary_line(scenario, lines, runs=3)
    assert summary["median"] == 120 and summary["met"] is True
    # A run that was not ok (it lost deliveries) is no evidence for the target.
    failed = [{**line, "ok": False} for line in lines[1:]]
    judged = summary_line(scenario, [lines[0], *failed], runs=3)
    assert judged["values"] == [90] and judged["ok_runs"] == 1
    assert judged["median"] == 90 and judged["met"] is False
    assert summary_line(scenario, failed, runs=2)["median"] is None
    assert summary_line(scenario, lines[:1], runs=3)["all_ok"] is False
    assert summary_line(scenario, [], runs=3)["met"] is False


def test_memory_is_read_past_the_services_presence_heartbeat() -> None:
    from notifications.presence import HEARTBEAT

    assert PRESENCE_HEARTBEAT_S == HEARTBEAT


@pytest.mark.live
def test_reconnect_storm_replays_what_each_socket_missed() -> None:
    """Every socket comes back with since=0 and is caught up: its ready came
    after exactly --stored replayed notifications (a socket short of them
    fails the run, exit 1)."""
    (line,) = run_bench(
        ["reconnect", "--spawn", "2", "--sockets", "60", "--stored", "3", "--idle", "0.5"],
        timeout=180,
    )
    assert line["bench"] == "reconnect"
    assert line["caught_up"] == 60 and line["errors"] == {}
    assert line["params"]["stored"] == 3
    assert line["handshakes_per_s"] > 0 and line["caught_up_s"]["p99"] >= line["caught_up_s"]["p50"]
    assert len(line["server_cpu_pct_idle"]) == 2
    assert line["server_cpu_s_per_1000_handshakes"] > 0
    assert line["profiles"] == []  # no --profile
    assert line["logs"]["tracebacks"] == 0
    assert line["ok"] is True


def test_pyspy_shares_count_inclusive_and_own_samples(tmp_path: Path) -> None:
    """bench.pyspy reads py-spy's raw format: ``frame;frame;... count``."""
    raw = tmp_path / "server-1.txt"
    raw.write_text(
        "run (loop.py:1);connect (c.py:2);send (p.py:3) 6\n"
        "run (loop.py:1);connect (c.py:2) 2\n"
        "worker (t.py:1);query (db.py:9) 2\n"
    )
    table = {name: (incl, own) for incl, own, name in shares(raw)}
    assert table["run"] == (80.0, 0.0)
    assert table["connect"] == (80.0, 20.0)
    assert table["send"] == (60.0, 60.0)
    assert table["query"] == (20.0, 20.0)
    within = {name: (incl, own) for incl, own, name in shares(raw, within="run")}
    assert "query" not in within and within["send"] == (75.0, 75.0)


@pytest.mark.live
def test_spawned_postgres_is_durable() -> None:
    """The benchmark's PostgreSQL flushes every commit, as production does."""
    import psycopg

    with Cluster(1, postgres=True, redis=False) as cluster:
        assert cluster.postgres is not None
        with psycopg.connect(cluster.postgres.url) as conn:
            shown = {
                name: conn.execute(f"SHOW {name}").fetchone()
                for name in ("fsync", "synchronous_commit", "full_page_writes")
            }
        assert shown == {name: ("on",) for name in shown}
        assert cluster.postgres_settings == {name: "on" for name in shown}
        assert cluster.config == "image"


@pytest.mark.live
def test_a_delivery_the_servers_drop_is_counted_lost(
    live_server_factory: LiveServerFactory, tmp_path: Path
) -> None:
    """Two processes without the shared Redis layer: each drops what the other holds.

    Batch POSTs go to one process; their recipients are spread over both, so
    the deliveries to the other process's sockets are accepted (202, stored)
    and never pushed. The bench must count each as lost and fail the run.
    """
    api_key = secrets.token_urlsafe(24)
    jwt_secret = secrets.token_urlsafe(36)
    env = {
        "DEBUG": "false",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(40),
        "NOTIFY_API_KEYS": f"loadtest:{api_key}",
        "JWT_SECRET": jwt_secret,
        "DATABASE_URL": f"sqlite:///{(tmp_path / 'db.sqlite3').resolve()}",
        "NOTIFY_PUBLISH_RATE": "100000/s",
    }
    first = live_server_factory(env)
    second = live_server_factory(env, migrate=False)
    (line,) = run_bench(
        ["run", "--scenario", "batch", "--sockets", "4", "--batch", "4", "--count", "2",
         "--concurrency", "1", "--drain-timeout", "8", "--no-results", "--no-warmup",
         "--url", first.url, "--url", second.url,
         f"--api-key={api_key}", f"--jwt-secret={jwt_secret}"],
        exit_code=1,
    )  # fmt: skip
    d = line["deliveries"]
    assert line["posts"]["accepted"] == 2
    assert d["expected"] == 8
    # Each POST reached the process holding 2 of its 4 recipients; a socket
    # may still catch up on an earlier one from the store when a later one
    # reaches it (counted "replayed"), so at least the last POST's 2 are lost.
    assert 2 <= d["lost"] <= 4, json.dumps(line)
    assert d["delivered"] == d["expected"] - d["lost"]
    assert sum(d["lost_by_url"].values()) == d["lost"]
    assert set(d["lost_by_url"]) <= {first.url, second.url}
    assert line["ok"] is False


@pytest.mark.live
def test_push_scenario_delivers_every_message_encrypted_and_signed() -> None:
    """``python -m bench push``: one process, the local HTTPS push service; every
    third message is decrypted and its VAPID token checked there."""
    (line,) = run_bench(
        ["push", "--users", "50", "--count", "300", "--batch", "50", "--check-every", "3"],
        timeout=240,
    )
    assert line["bench"] == "push" and line["ok"] is True
    pushes = line["pushes"]
    assert pushes["delivered"] == 300
    assert pushes["checked"] == 100
    assert pushes["errors"] == []
    assert pushes["per_s"] > 0
    assert pushes["seconds"] > 0
    assert line["cpu"]["service_s"] is not None and line["cpu"]["service_ms_per_push"] > 0
    assert line["cores"] and len(line["load_avg"]["before"]) == 3


@pytest.mark.live
def test_push_ws_scenario_measures_sockets_with_and_without_pushes() -> None:
    """``python -m bench push-ws``: a quiet and a flood unicast run against the
    same process; the flood's pushes reach the push service meanwhile and
    no WebSocket delivery is lost in either run."""
    (line,) = run_bench(
        ["push-ws", "--rounds", "1", "--sockets", "10", "--count", "100",
         "--concurrency", "4", "--push-users", "20", "--push-batch", "20",
         "--push-rate", "100", "--check-every", "2"],
        timeout=300,
    )  # fmt: skip
    assert line["bench"] == "push-ws" and line["ok"] is True, json.dumps(line)
    quiet, flood = line["runs"]
    assert (quiet["pushes"], flood["pushes"]) == ("none", "flood")
    assert quiet["lost"] == flood["lost"] == 0
    assert quiet["deliveries_per_s"] > 0 and flood["deliveries_per_s"] > 0
    assert flood["pushes_owed"] > 0 and flood["pushes_per_s"] > 0
    assert "pushes_owed" not in quiet
    assert line["push_errors"] == []
    assert line["flood_over_quiet"] == round(
        flood["deliveries_per_s"] / quiet["deliveries_per_s"], 3
    )
