"""The optional push-worker component (deploy/components/push-worker)."""

from __future__ import annotations

import re
from typing import Any

import jsonschema
import yaml

from tests.deploy import support
from tests.deploy.test_manifests import Rendered, manage_py_command


def test_push_worker_runs_the_command_and_the_service_stops_sending(rendered: Rendered) -> None:
    resources = rendered["base+push-worker"]
    worker = support.one(resources, "Deployment", "notify-push-worker")
    (app,) = [a for a in support.app_containers(resources) if a.workload is worker]
    assert manage_py_command(app)[:1] == ["push_worker"]
    env = support.container_env(app, resources)
    for name in ("DATABASE_URL", "REDIS_URL", "VAPID_PRIVATE_KEY"):
        assert env[name].source.startswith("secret:"), name
    assert env["VAPID_SUBJECT"].value
    server_env = support.container_env(support.server_container(resources), resources)
    assert server_env["NOTIFY_PUSH_WORKER_IN_PROCESS"].value == "false"
    base_server = support.container_env(
        support.server_container(rendered["base"]), rendered["base"]
    )
    assert "NOTIFY_PUSH_WORKER_IN_PROCESS" not in base_server  # in-process by default
    assert base_server["VAPID_PRIVATE_KEY"].optional


def test_the_component_tags_the_image_as_the_base_does() -> None:
    base = yaml.safe_load((support.DEPLOY / "base" / "kustomization.yaml").read_text())
    component = yaml.safe_load(
        (support.DEPLOY / "components" / "push-worker" / "kustomization.yaml").read_text()
    )
    assert component["images"] == base["images"]


# A subset of the monitoring.coreos.com/v1 PodMonitor CRD schema (prometheus-
# operator), strict about the fields this repository uses.
_DURATION = {"type": "string", "pattern": "^([0-9]+(ms|s|m|h))+$"}
_RELABELING = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "action": {"enum": ["replace", "keep", "drop", "labelmap", "labeldrop", "labelkeep"]},
        "sourceLabels": {"type": "array", "items": {"type": "string"}},
        "separator": {"type": "string"},
        "targetLabel": {"type": "string"},
        "regex": {"type": "string"},
        "replacement": {"type": "string"},
    },
}
PODMONITOR_SCHEMA = support.operator_schema(
    "PodMonitor",
    {
        "type": "object",
        "required": ["selector", "podMetricsEndpoints"],
        "additionalProperties": False,
        "properties": {
            "jobLabel": {"type": "string"},
            "podTargetLabels": {"type": "array", "items": {"type": "string"}},
            "selector": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "matchLabels": {
                        "type": "object",
                        "additionalProperties": {"type": "string"},
                    },
                    "matchExpressions": {"type": "array"},
                },
            },
            "podMetricsEndpoints": {
                "type": "array",
                "minItems": 1,
                "items": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "port": {"type": "string"},
                        "path": {"type": "string", "pattern": "^/"},
                        "scheme": {"enum": ["http", "https"]},
                        "interval": _DURATION,
                        "scrapeTimeout": _DURATION,
                        "honorLabels": {"type": "boolean"},
                        "relabelings": {"type": "array", "items": _RELABELING},
                        "metricRelabelings": {"type": "array", "items": _RELABELING},
                    },
                },
            },
        },
    },
)
COMBINED = "production+observability+push-worker"


def _relabelled_job(endpoint: dict[str, Any]) -> str | None:
    """The job label after the endpoint's relabelings (the operator's default before)."""
    job = None
    for rule in endpoint.get("relabelings", []):
        if rule.get("targetLabel") == "job" and rule.get("action", "replace") == "replace":
            assert not rule.get("sourceLabels"), "a fixed job name, not one taken from labels"
            job = rule["replacement"]
    return job


def test_the_podmonitor_scrapes_the_workers_under_the_alerts_job(rendered: Rendered) -> None:
    """With the worker Deployment, Web Push metrics come from its pods only: a
    PodMonitor must scrape their metrics port and file the series under the job
    the dashboard and the alerts select, or NotifyPushOutboxAging watches nothing."""
    resources = rendered[COMBINED]
    monitor = support.one(resources, "PodMonitor", "notify-push-worker")
    jsonschema.validate(monitor, PODMONITOR_SCHEMA)
    assert monitor["metadata"]["namespace"] == "notify"
    worker = support.one(resources, "Deployment", "notify-push-worker")
    selector = monitor["spec"]["selector"]
    assert support.labels_match(selector, worker["spec"]["template"]["metadata"]["labels"])
    server = support.one(resources, "Deployment", "notify-push")
    # The server pods are the ServiceMonitor's: scraping them twice would double every sum.
    assert not support.labels_match(selector, server["spec"]["template"]["metadata"]["labels"])
    (app,) = [a for a in support.app_containers(resources) if a.workload is worker]
    ports = {p["name"]: p["containerPort"] for p in app.container["ports"]}
    assert support.option(manage_py_command(app), "--metrics-port") == "9100"
    rule = support.one(resources, "PrometheusRule")
    rules = [r for g in rule["spec"]["groups"] for r in g["rules"]]
    (outbox,) = [r for r in rules if r.get("alert") == "NotifyPushOutboxAging"]
    (alert_job,) = set(re.findall(r'job="([^"]*)"', outbox["expr"]))
    for endpoint in monitor["spec"]["podMetricsEndpoints"]:
        assert ports[endpoint["port"]] == 9100
        assert endpoint["path"] == "/metrics"
        assert _relabelled_job(endpoint) == alert_job
    # Only the combining component brings it: the push-worker component alone
    # must not need the Prometheus Operator's CRDs.
    for build in ("base+push-worker", "production+observability", *support.OVERLAYS):
        assert not support.find(rendered[build], "PodMonitor"), build


def _worker_policies(resources: list[support.Resource]) -> list[support.Resource]:
    worker = support.one(resources, "Deployment", "notify-push-worker")
    server = support.one(resources, "Deployment", "notify-push")
    worker_labels = worker["spec"]["template"]["metadata"]["labels"]
    server_labels = server["spec"]["template"]["metadata"]["labels"]
    policies = [
        p
        for p in support.find(resources, "NetworkPolicy")
        if support.labels_match(p["spec"]["podSelector"], worker_labels)
    ]
    for policy in policies:
        assert not support.labels_match(policy["spec"]["podSelector"], server_labels)
        assert policy["spec"]["policyTypes"] == ["Ingress"]
    return policies


def test_the_worker_pods_admit_no_one_but_prometheus(rendered: Rendered) -> None:
    """The workers serve only /metrics: the component's policy admits no
    ingress at all, and the monitoring component lets the namespace
    "monitoring" reach their metrics port, and nothing else."""
    alone = rendered["base+push-worker"]
    policies = _worker_policies(alone)
    assert [support.kind_name(p) for p in policies] == ["NetworkPolicy/notify-push-worker"]
    assert policies[0]["spec"]["ingress"] == []

    resources = rendered[COMBINED]
    rules = [r for p in _worker_policies(resources) for r in p["spec"].get("ingress", [])]
    (rule,) = rules
    worker = support.one(resources, "Deployment", "notify-push-worker")
    (app,) = [a for a in support.app_containers(resources) if a.workload is worker]
    ports = {p["name"]: p["containerPort"] for p in app.container["ports"]}
    assert [ports[p["port"]] for p in rule["ports"]] == [9100]
    assert rule["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    ]
