"""scripts/ensure-deploy-tools.sh from scratch, and its version check held many times.

The check used to pipe ``kubectl version --client`` into ``grep -q`` under
``set -o pipefail``: grep exits at the first match, kubectl dies of SIGPIPE
writing its next line, and pipefail failed the install about one time in four
on a machine that had never installed the tools (CI's included).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.deploy import support

SCRIPT = support.REPO / "scripts" / "ensure-deploy-tools.sh"
CHECKS = 50


def run_script(
    tools_dir: Path, *args: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT), *args],
        env={**os.environ, "DEPLOY_TOOLS_DIR": str(tools_dir)},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_fresh_install_and_the_version_check_every_time(tmp_path: Path) -> None:
    tools_dir = tmp_path / "deploy-tools"
    installed = run_script(tools_dir, "--print-bindir", timeout=900)
    assert installed.returncode == 0, installed.stderr
    assert "installing kubectl, hadolint, kubernetes-validate" in installed.stderr
    assert installed.stdout.strip().splitlines()[-1] == str(tools_dir / "bin")

    failures = []
    for attempt in range(CHECKS):
        check = run_script(tools_dir, "--check")
        if check.returncode != 0:
            failures.append(f"#{attempt}: {check.returncode} {check.stderr.strip()}")
    assert not failures, "\n".join(failures)

    again = run_script(tools_dir, "--print-bindir")
    assert again.returncode == 0, again.stderr
    assert again.stderr == "", "an installed tools dir is used as it is, silently"


def test_the_check_fails_without_the_tools(tmp_path: Path) -> None:
    check = run_script(tmp_path / "nothing-here", "--check")
    assert check.returncode == 1
    assert "ensure-deploy-tools: kubectl is not v1.37.1" in check.stderr
