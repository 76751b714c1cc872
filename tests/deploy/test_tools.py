"""The real tools on the real files: kustomize builds, Kubernetes schemas, hadolint.

Tools come pinned from PyPI (scripts/ensure-deploy-tools.sh): kubectl 1.37.1
(kustomize v5.8.1 built in), hadolint 2.15.1, kubernetes-validate 1.37.0 with
the JSON schemas of Kubernetes 1.25..1.37, all offline.
"""

from __future__ import annotations

import copy
import json
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from tests.deploy import support

# The oldest Kubernetes the manifests support and the newest the schemas know.
KUBERNETES_VERSIONS = ("1.30.0", "1.37.0")

# Custom resources have no upstream schema in kubernetes-validate: checked
# against SERVICEMONITOR_SCHEMA below, PROMETHEUSRULE_SCHEMA
# (tests/deploy/test_observability.py) and PODMONITOR_SCHEMA
# (tests/deploy/test_push_worker.py) instead.
CUSTOM_KINDS = {"monitoring.coreos.com/v1": {"ServiceMonitor", "PrometheusRule", "PodMonitor"}}


def validate(bindir: Path, resources: list[dict[str, Any]]) -> list[dict[str, Any]]:
    result = subprocess.run(
        [str(bindir / "python"), str(support.HERE / "k8s_validate.py")],
        input=json.dumps({"versions": KUBERNETES_VERSIONS, "resources": resources}),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    results: list[dict[str, Any]] = json.loads(result.stdout)
    return results


def test_tools_are_the_pinned_versions(deploy_tools: Path) -> None:
    kubectl = subprocess.run(
        [str(deploy_tools / "kubectl"), "version", "--client"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "Client Version: v1.37.1" in kubectl
    assert "Kustomize Version: v5." in kubectl
    hadolint = subprocess.run(
        [str(deploy_tools / "hadolint"), "--version"], capture_output=True, text=True, check=True
    ).stdout
    assert "2.15.1" in hadolint


@pytest.mark.parametrize("build", list(support.BUILDS))
def test_every_kustomization_builds(
    build: str, rendered: dict[str, list[support.Resource]]
) -> None:
    resources = rendered[build]
    names = [support.kind_name(r) for r in resources]
    assert len(names) == len(set(names)), f"duplicates in {build}: {names}"
    for kind in ("Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"):
        assert support.find(resources, kind), f"{build} has no {kind}"
    for kind in ("Job", "CronJob", "NetworkPolicy", "Ingress", "ConfigMap", "ServiceAccount"):
        assert support.find(resources, kind), f"{build} has no {kind}"


@pytest.mark.parametrize("build", list(support.BUILDS))
def test_every_resource_matches_the_kubernetes_schemas(
    build: str, rendered: dict[str, list[support.Resource]], deploy_tools: Path
) -> None:
    resources = rendered[build]
    problems = []
    for result in validate(deploy_tools, resources):
        resource = resources[result["index"]]
        custom = resource["kind"] in CUSTOM_KINDS.get(resource["apiVersion"], set())
        if result["status"] == "ok" or (custom and result["status"] == "no-schema"):
            continue
        problems.append(
            f"{support.kind_name(resource)} @ {result['version']}: "
            f"{result['status']} {result['message']}"
        )
    assert not problems, "\n".join(problems)


def test_the_schema_check_catches_mistakes(
    rendered: dict[str, list[support.Resource]], deploy_tools: Path
) -> None:
    """The validator is strict: a misspelt field, a wrong type and an unknown kind fail."""
    deployment = copy.deepcopy(support.one(rendered["base"], "Deployment"))
    typo = copy.deepcopy(deployment)
    typo["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    wrong_type = copy.deepcopy(deployment)
    wrong_type["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = "thirty"
    unknown = {"apiVersion": "apps/v1", "kind": "Deploymnet", "metadata": {"name": "x"}}
    statuses = [r["status"] for r in validate(deploy_tools, [typo, wrong_type, unknown])]
    assert statuses[:4] == ["invalid"] * 4, statuses
    assert set(statuses[4:]) == {"no-schema"}, statuses


# A subset of the monitoring.coreos.com/v1 ServiceMonitor CRD schema (prometheus-
# operator), strict about the fields this repository uses.
SERVICEMONITOR_SCHEMA = support.operator_schema(
    "ServiceMonitor",
    {
        "type": "object",
        "required": ["selector", "endpoints"],
        "additionalProperties": False,
        "properties": {
            "jobLabel": {"type": "string"},
            "targetLabels": {"type": "array", "items": {"type": "string"}},
            "podTargetLabels": {"type": "array", "items": {"type": "string"}},
            "namespaceSelector": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "any": {"type": "boolean"},
                    "matchNames": {"type": "array", "items": {"type": "string"}},
                },
            },
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
            "endpoints": {
                "type": "array",
                "minItems": 1,
                "items": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "port": {"type": "string"},
                        "targetPort": {"type": ["string", "integer"]},
                        "path": {"type": "string", "pattern": "^/"},
                        "scheme": {"enum": ["http", "https"]},
                        "interval": {"type": "string", "pattern": "^([0-9]+(ms|s|m|h))+$"},
                        "scrapeTimeout": {
                            "type": "string",
                            "pattern": "^([0-9]+(ms|s|m|h))+$",
                        },
                        "honorLabels": {"type": "boolean"},
                        "relabelings": {"type": "array"},
                        "metricRelabelings": {"type": "array"},
                    },
                },
            },
        },
    },
)


def test_servicemonitor_component(rendered: dict[str, list[support.Resource]]) -> None:
    resources = rendered["base+servicemonitor"]
    monitor = support.one(resources, "ServiceMonitor")
    jsonschema.validate(monitor, SERVICEMONITOR_SCHEMA)
    service = support.one(resources, "Service", "notify-push")
    assert support.labels_match(monitor["spec"]["selector"], service["metadata"]["labels"])
    port_names = {p["name"] for p in service["spec"]["ports"]}
    for endpoint in monitor["spec"]["endpoints"]:
        assert endpoint["port"] in port_names
        assert endpoint["path"] == "/metrics"
    # Only the component brings it: no overlay needs the Prometheus Operator CRDs.
    for build in ("base", *support.OVERLAYS):
        assert not support.find(rendered[build], "ServiceMonitor"), build


def test_hadolint_passes_on_the_dockerfile(deploy_tools: Path) -> None:
    result = subprocess.run(
        [str(deploy_tools / "hadolint"), "--no-color", str(support.DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_is_not_a_no_op(deploy_tools: Path, tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get install -y curl\nCMD uvicorn app\n")
    result = subprocess.run(
        [str(deploy_tools / "hadolint"), "--no-color", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "DL3007" in result.stdout  # "latest"
