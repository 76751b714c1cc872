"""The alert rules (deploy/observability/prometheusrule.yaml): promtool accepts
them, its unit tests (alerts-test.yaml) fire and clear them on synthetic series,
their expressions use only names the service exports, each has a runbook."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.observability.promql import metric_names
from tests.support.servers import REPO_ROOT

RULE = REPO_ROOT / "deploy" / "observability" / "prometheusrule.yaml"
UNIT_TESTS = Path(__file__).resolve().parent / "alerts-test.yaml"
OPERATIONS = REPO_ROOT / "docs" / "operations.md"
# Series Prometheus itself adds to every target, not the service's.
PROMETHEUS_SERIES = {"up"}


def rules() -> list[dict[str, Any]]:
    spec = yaml.safe_load(RULE.read_text())["spec"]
    return [rule for group in spec["groups"] for rule in group["rules"]]


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    assert binary, "promtool missing: run scripts/ensure-system-deps.sh (Debian's prometheus)"
    return subprocess.run(
        [binary, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


@pytest.fixture
def rule_dir(tmp_path: Path) -> Path:
    """The PrometheusRule's spec as a plain Prometheus rule file, and the unit tests."""
    spec = yaml.safe_load(RULE.read_text())["spec"]
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(spec))
    shutil.copy(UNIT_TESTS, tmp_path / "alerts-test.yaml")
    return tmp_path


def test_promtool_check_rules(rule_dir: Path) -> None:
    result = promtool("check", "rules", "rules.yaml", cwd=rule_dir)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules())} rules found" in result.stdout


def test_promtool_check_rules_refuses_a_broken_expression(rule_dir: Path) -> None:
    spec = yaml.safe_load((rule_dir / "rules.yaml").read_text())
    spec["groups"][0]["rules"][0]["expr"] = "sum by (pod (notify_ready)"
    (rule_dir / "rules.yaml").write_text(yaml.safe_dump(spec))
    result = promtool("check", "rules", "rules.yaml", cwd=rule_dir)
    assert result.returncode != 0


def test_the_alerts_fire_and_clear_as_their_unit_tests_say(rule_dir: Path) -> None:
    result = promtool("test", "rules", "alerts-test.yaml", cwd=rule_dir)
    assert result.returncode == 0, result.stdout + result.stderr
    tested = set(re.findall(r"alertname: (\w+)", UNIT_TESTS.read_text()))
    assert tested == {rule["alert"] for rule in rules()}


@pytest.mark.live
def test_alert_expressions_use_only_exported_metric_names(exported: set[str]) -> None:
    missing = {}
    for rule in rules():
        names = metric_names(rule["expr"])
        assert names, rule["alert"]
        unknown = names - exported - PROMETHEUS_SERIES
        if unknown:
            missing[rule["alert"]] = sorted(unknown)
    assert not missing, missing


def test_every_alert_has_a_runbook_section() -> None:
    headings = {
        line.lstrip("#").strip().lower()
        for line in OPERATIONS.read_text().splitlines()
        if line.startswith("### ")
    }
    for rule in rules():
        anchor = rule["annotations"]["runbook"].partition("#")[2]
        assert anchor == rule["alert"].lower()
        assert anchor in headings, f"docs/operations.md has no '### {rule['alert']}'"
