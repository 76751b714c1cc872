"""The optional push-worker component (deploy/components/push-worker)."""

from __future__ import annotations

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
