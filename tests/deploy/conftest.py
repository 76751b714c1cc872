"""Fixtures of the deployment tests: the tools, and every kustomization rendered once."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.deploy import support


@pytest.fixture(scope="session")
def deploy_tools() -> Path:
    """bin dir with kubectl, hadolint and a python that has kubernetes-validate."""
    return support.ensure_tools()


@pytest.fixture(scope="session")
def rendered(deploy_tools: Path) -> dict[str, list[support.Resource]]:
    """``kubectl kustomize`` of every build in ``support.BUILDS``, by name."""
    return {name: support.kustomize(deploy_tools, path) for name, path in support.BUILDS.items()}


@pytest.fixture(scope="session")
def settings_env_names() -> set[str]:
    names = support.settings_env_names()
    # The scan must find the well-known ones, or it is broken.
    assert {"DATABASE_URL", "REDIS_URL", "DEBUG", "NOTIFY_DRAIN_SECONDS"} <= names, names
    return names
