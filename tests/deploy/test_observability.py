"""The optional observability component (deploy/observability): PrometheusRule,
ServiceMonitor and the dashboard ConfigMap, as ``kubectl kustomize`` renders them.

The Prometheus Operator's CRD schemas are not in kubernetes-validate: the rule
is checked against the small schema below here, and its expressions by
``promtool`` in tests/observability/test_alerts.py.
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import jsonschema
import pytest

from tests.deploy import support
from tests.deploy.support import operator_schema

Rendered = dict[str, list[support.Resource]]
BUILD = "production+observability"
OBSERVABILITY = support.DEPLOY / "observability"
DURATION = "^([0-9]+(ms|s|m|h|d|w|y))+$"

# A subset of the monitoring.coreos.com/v1 PrometheusRule CRD schema (prometheus-
# operator), strict about the fields this repository uses.
PROMETHEUSRULE_SCHEMA = operator_schema(
    "PrometheusRule",
    {
        "type": "object",
        "required": ["groups"],
        "additionalProperties": False,
        "properties": {
            "groups": {
                "type": "array",
                "minItems": 1,
                "items": {
                    "type": "object",
                    "required": ["name", "rules"],
                    "additionalProperties": False,
                    "properties": {
                        "name": {"type": "string", "minLength": 1},
                        "interval": {"type": "string", "pattern": DURATION},
                        "rules": {
                            "type": "array",
                            "minItems": 1,
                            "items": {
                                "type": "object",
                                "required": ["expr"],
                                "oneOf": [
                                    {"required": ["alert"]},
                                    {"required": ["record"]},
                                ],
                                "additionalProperties": False,
                                "properties": {
                                    "alert": {"type": "string"},
                                    "record": {"type": "string"},
                                    "expr": {"type": ["string", "integer"]},
                                    "for": {"type": "string", "pattern": DURATION},
                                    "keep_firing_for": {"type": "string"},
                                    "labels": {
                                        "type": "object",
                                        "additionalProperties": {"type": "string"},
                                    },
                                    "annotations": {
                                        "type": "object",
                                        "additionalProperties": {"type": "string"},
                                    },
                                },
                            },
                        },
                    },
                },
            },
        },
    },
)


def test_the_component_renders_rule_monitor_and_dashboard(rendered: Rendered) -> None:
    resources = rendered[BUILD]
    rule = support.one(resources, "PrometheusRule")
    jsonschema.validate(rule, PROMETHEUSRULE_SCHEMA)
    assert rule["metadata"]["namespace"] == "notify"  # the overlay's namespace applies
    alerts = {r["alert"] for g in rule["spec"]["groups"] for r in g["rules"]}
    assert {"NotifyPushNotReady", "NotifyPushDroppingPushes", "NotifyPushSlowDelivery"} <= alerts
    assert "NotifyPushPublish5xx" in alerts
    for group in rule["spec"]["groups"]:
        for item in group["rules"]:
            assert item["labels"]["severity"] in ("warning", "critical"), item["alert"]
            assert item["annotations"]["runbook"].startswith("docs/operations.md#")
            assert {"summary", "description"} <= item["annotations"].keys()
    support.one(resources, "ServiceMonitor")
    dashboard = support.one(resources, "ConfigMap", "notify-push-dashboard")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    shipped = json.loads((OBSERVABILITY / "notify-push-dashboard.json").read_text())
    assert json.loads(dashboard["data"]["notify-push-dashboard.json"]) == shipped
    # Only the component brings the CRD kinds: no overlay needs the operator.
    for build in ("base", *support.OVERLAYS):
        assert not support.find(rendered[build], "PrometheusRule"), build


def test_the_rules_select_the_job_the_servicemonitor_scrapes(rendered: Rendered) -> None:
    """The operator names the job after the Service (no jobLabel set): every
    expression must select that job, or the alerts watch nothing."""
    resources = rendered[BUILD]
    monitor = support.one(resources, "ServiceMonitor")
    assert "jobLabel" not in monitor["spec"]
    services = [
        s
        for s in support.find(resources, "Service")
        if support.labels_match(monitor["spec"]["selector"], s["metadata"]["labels"])
    ]
    assert len(services) == 1
    job = services[0]["metadata"]["name"]
    rule = support.one(resources, "PrometheusRule")
    for group in rule["spec"]["groups"]:
        for item in group["rules"]:
            jobs = set(re.findall(r'job="([^"]*)"', item["expr"]))
            assert jobs == {job}, (item["alert"], jobs)


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("spec", "groups", 0, "rules", 0, "for"), "five minutes"),
        (("spec", "groups", 0, "rules", 0, "labels"), {"severity": 2}),
        (("spec", "groups", 0, "rules", 0, "expresion"), "up"),
        (("spec", "group"), []),
    ],
)
def test_the_schema_catches_mistakes(rendered: Rendered, path: tuple[Any, ...], value: Any) -> None:
    broken = copy.deepcopy(support.one(rendered[BUILD], "PrometheusRule"))
    target = broken
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, PROMETHEUSRULE_SCHEMA)
