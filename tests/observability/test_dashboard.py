"""The Grafana dashboard (deploy/observability) queries only names the service exports."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.observability.promql import metric_names
from tests.support.servers import REPO_ROOT

pytestmark = pytest.mark.live

DASHBOARD = REPO_ROOT / "deploy" / "observability" / "notify-push-dashboard.json"


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for panel in dashboard["panels"]:
        found.append(panel)
        found.extend(panel.get("panels", []))  # collapsed rows keep theirs inside
    return found


def queries(path: Path = DASHBOARD) -> list[tuple[str, str]]:
    """(panel title, expr) for every query of every panel."""
    dashboard = json.loads(path.read_text())
    return [
        (panel["title"], target["expr"])
        for panel in panels(dashboard)
        for target in panel.get("targets", [])
    ]


def test_the_extractor_finds_metric_names() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (le, pod) (rate(notify_x_bucket{job=~"$job", '
        'code="4008"}[$__rate_interval]))) / on (pod) group_left notify_y offset 5m '
        "> bool 2 and notify_z"
    )
    assert metric_names(expr) == {"notify_x_bucket", "notify_y", "notify_z"}


def test_every_panel_query_uses_only_exported_metric_names(exported: set[str]) -> None:
    found = queries()
    assert len(found) >= 15, found
    missing = {}
    for title, expr in found:
        names = metric_names(expr)
        assert names, f"{title}: no metric name in {expr!r}"
        unknown = names - exported
        if unknown:
            missing[f"{title}: {expr}"] = sorted(unknown)
    assert not missing, missing


def test_a_misspelt_name_would_be_caught(exported: set[str]) -> None:
    assert metric_names("rate(notify_notifications_accepted[5m])") - exported


def test_the_dashboard_shape_grafana_imports() -> None:
    """Grafana 10+: a Prometheus data-source variable every panel and query uses,
    the variables the queries reference, unique panel ids, panels on the grid."""
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["schemaVersion"] >= 36
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    ids = [p["id"] for p in panels(dashboard)]
    assert len(ids) == len(set(ids))
    titles = " ".join(p["title"] for p in panels(dashboard))
    for wanted in ("open", "per second", "Publish latency", "Commit-to-frame", "429", "503"):
        assert wanted in titles, wanted
    for wanted in ("4008", "Refused handshakes", "Replay"):
        assert wanted in titles, wanted
    for wanted in ("Web Push outbox depth", "oldest owed push", "Pushes sent"):
        assert wanted in titles, wanted
    for panel in panels(dashboard):
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24
        for target in panel["targets"]:
            assert target["datasource"] == panel["datasource"]
            for var in ("job", "pod"):
                assert f"${var}" in target["expr"], (panel["title"], target["expr"])


def sample(scrape: str, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(scrape):
        for item in family.samples:
            if item.name == name and item.labels == labels:
                return float(item.value)
    raise AssertionError(f"no sample {name}{labels}")


def test_the_operator_counters_count_what_the_server_did(scrape: str) -> None:
    """What ``exercise`` did shows in the series the dashboard and alerts read."""
    assert sample(scrape, "notify_publish_responses_total", status="202") == 2
    assert sample(scrape, "notify_publish_responses_total", status="401") == 1
    assert sample(scrape, "notify_publish_responses_total", status="503") == 0
    assert sample(scrape, "notify_handshakes_refused_total", reason="token") == 1
    assert sample(scrape, "notify_handshakes_refused_total", reason="origin") == 0
    assert sample(scrape, "notify_notifications_replayed_total") == 1
    assert sample(scrape, "notify_ready") == 1
    # The in-process push worker ran: one push delivered to the push service.
    assert sample(scrape, "notify_push_sent_total", result="delivered") == 1


def test_the_push_panels_query_series_the_worker_exports(scrape: str) -> None:
    """The Web Push panels' names are samples of this scrape, not only declared
    families: the worker ran and set them (Web Push on, as in production)."""
    sampled = {
        item.name for family in text_string_to_metric_families(scrape) for item in family.samples
    }
    push_queries = [(t, e) for t, e in queries() if "push" in e]
    assert len(push_queries) >= 4, push_queries
    for title, expr in push_queries:
        assert metric_names(expr) <= sampled, (title, expr)
