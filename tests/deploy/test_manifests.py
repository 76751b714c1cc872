"""The rendered manifests agree with the settings, the URLs and the image.

Env var names, probe paths and ports, shutdown timing, security context,
selectors, Jobs and Secrets are read from ``kubectl kustomize`` output and
compared with what the code reads (service/, notifications/, api/) and with
the Dockerfile.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from django.http.request import validate_host
from django.urls import Resolver404, resolve

from api.publish_asgi import PATH as PUBLISH_PATH
from service import ops
from tests.deploy import support

Rendered = dict[str, list[support.Resource]]

# What production mode needs in the server container (DEBUG=false).
REQUIRED_SERVER = (
    "DEBUG",
    "DJANGO_SECRET_KEY",
    "NOTIFY_API_KEYS",
    "DATABASE_URL",
    "ALLOWED_HOSTS",
    "ALLOWED_ORIGINS",
)
# What every management command (migrate, purge) needs to load the settings.
REQUIRED_JOB = ("DEBUG", "DJANGO_SECRET_KEY", "DATABASE_URL")
SECRET_VARS = {
    "DJANGO_SECRET_KEY",
    "JWT_SECRET",
    "JWT_PUBLIC_KEY",
    "NOTIFY_API_KEYS",
    "DATABASE_URL",
    "REDIS_URL",
    "REDIS_SENTINEL_PASSWORD",
    "VAPID_PRIVATE_KEY",
}


def image_cmd() -> list[str]:
    cmd = support.dockerfile_stages()[-1].last("CMD")
    assert cmd is not None
    return support.exec_form(cmd.args)


def image_port() -> int:
    port = support.option(image_cmd(), "--port")
    assert port is not None
    return int(port)


def container_port(app: support.AppContainer, port: int | str) -> int:
    if isinstance(port, int):
        return port
    for item in app.container.get("ports", []):
        if item.get("name") == port:
            return int(item["containerPort"])
    raise AssertionError(f"{app.label}: no port named {port!r}")


def pod_env_values(app: support.AppContainer, resources: list[support.Resource]) -> dict[str, str]:
    return {
        name: var.value
        for name, var in support.container_env(app, resources).items()
        if var.value is not None
    }


# --------------------------------------------------------------------------- env vars


@pytest.mark.parametrize("build", list(support.BUILDS))
def test_every_env_var_is_one_the_settings_read(
    build: str, rendered: Rendered, settings_env_names: set[str]
) -> None:
    apps = support.app_containers(rendered[build])
    assert {a.workload["kind"] for a in apps} == {"Deployment", "Job", "CronJob"}
    unknown = {
        f"{app.label}: {name}"
        for app in apps
        for name in support.container_env(app, rendered[build])
        if name not in settings_env_names
    }
    assert not unknown, f"not read by the service: {sorted(unknown)}"


def test_the_scanned_names_are_documented(settings_env_names: set[str]) -> None:
    """The scan and docs/configuration.md agree (a sanity check of the scan itself)."""
    documented = support.documented_env_names()
    assert len(documented) > 20
    assert documented - settings_env_names == set(), "documented, but the scan misses them"


@pytest.mark.parametrize("build", support.COMPLETE)
def test_production_settings_are_all_set(build: str, rendered: Rendered) -> None:
    resources = rendered[build]
    for app in support.app_containers(resources):
        env = support.container_env(app, resources)
        required = REQUIRED_SERVER if app.workload["kind"] == "Deployment" else REQUIRED_JOB
        if app.init:
            required = REQUIRED_JOB
        for name in required:
            assert name in env, f"{app.label}: {name} is not set"
            assert not env[name].optional, f"{app.label}: {name} must not be optional"
        assert env["DEBUG"].value == "false", f"{app.label}: DEBUG must be false"
        jwt = [env[n] for n in ("JWT_SECRET", "JWT_PUBLIC_KEY") if n in env]
        assert any(not v.optional for v in jwt), f"{app.label}: JWT_SECRET or JWT_PUBLIC_KEY"
        # Secrets come from Secrets, never from the ConfigMap or a literal value.
        for name in SECRET_VARS & env.keys():
            assert env[name].source.startswith("secret:"), f"{app.label}: {name} in clear"
    server = support.server_container(resources)
    env = support.container_env(server, resources)
    # Several replicas: the in-process channel layer would split the service.
    assert "REDIS_URL" in env or "REDIS_SENTINELS" in env
    redis = env.get("REDIS_URL") or env["REDIS_SENTINELS"]
    assert not redis.optional


PRODUCTION_SECRET_VALUES = {
    "DJANGO_SECRET_KEY": "x" * 60,
    "JWT_SECRET": "y" * 48,
    "NOTIFY_API_KEYS": "shop:" + "z" * 40,
    "DATABASE_URL": "postgres://notify:pw@db.internal:5432/notify",
    "REDIS_URL": "rediss://:pw@redis.internal:6380/0",
}

SETTINGS_PROBE = """
import json, os, sys
os.environ["DJANGO_SETTINGS_MODULE"] = "service.settings"
try:
    import django
    django.setup()
except Exception as exc:
    print(json.dumps({"error": type(exc).__name__, "message": str(exc)}))
    sys.exit(0)
from django.conf import settings
print(json.dumps({
    "DEBUG": settings.DEBUG,
    "ALLOWED_HOSTS": settings.ALLOWED_HOSTS,
    "origins": settings.NOTIFY_ALLOWED_ORIGINS,
    "engine": settings.DATABASES["default"]["ENGINE"],
    "layer": settings.CHANNEL_LAYERS["default"]["BACKEND"],
    "redis_hosts": [
        sorted(h) for h in settings.CHANNEL_LAYERS["default"].get("CONFIG", {}).get("hosts", [])
    ],
    "api_keys": sorted(settings.NOTIFY_API_KEYS),
    "drain": settings.NOTIFY_DRAIN_SECONDS,
    "ws_max_frame": settings.NOTIFY_WS_MAX_FRAME_BYTES,
    "static_root": str(settings.STATIC_ROOT),
    "base_dir": str(settings.BASE_DIR),
}))
"""


def load_settings(env: dict[str, str]) -> dict[str, Any]:
    """Load service.settings in a fresh process with exactly ``env``."""
    result = subprocess.run(
        [sys.executable, "-c", SETTINGS_PROBE],
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env},
        cwd=support.REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    loaded: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return loaded


def image_env() -> dict[str, str]:
    return support.env_of(support.dockerfile_stages()[-1])


@pytest.mark.parametrize("build", support.COMPLETE)
def test_the_settings_accept_each_containers_environment(build: str, rendered: Rendered) -> None:
    """Each notify-push container's env (the image's ENV, then the pod's) loads the
    settings in production mode; production's external Secret gets sample values."""
    resources = rendered[build]
    for app in support.app_containers(resources):
        env = {k: v for k, v in image_env().items() if k not in ("PATH",)}
        for name, var in support.container_env(app, resources).items():
            if var.value is not None:
                env[name] = var.value
            elif name in PRODUCTION_SECRET_VALUES:
                env[name] = PRODUCTION_SECRET_VALUES[name]
        loaded = load_settings(env)
        assert "error" not in loaded, f"{app.label}: {loaded}"
        assert loaded["DEBUG"] is False
        assert loaded["engine"] == "django.db.backends.postgresql", app.label
        if app.workload["kind"] == "Deployment" and not app.init:
            assert "InMemory" not in loaded["layer"], app.label
            assert loaded["redis_hosts"], app.label
            if "REDIS_SENTINELS" in env:
                assert "sentinels" in loaded["redis_hosts"][0], app.label
            assert loaded["api_keys"], app.label
            assert loaded["origins"], app.label


def test_the_secret_example_is_complete_and_refused_as_is(rendered: Rendered) -> None:
    path = support.DEPLOY / "base" / "secret.example.yaml"
    example = yaml.safe_load(path.read_text())
    assert example["kind"] == "Secret"
    assert example["metadata"]["name"] == support.SECRET_NAME
    keys = set(example["stringData"])
    text = path.read_text()
    referenced: set[str] = set()
    for app in support.app_containers(rendered["base"]):
        for var in support.container_env(app, rendered["base"]).values():
            if var.source.startswith(f"secret:{support.SECRET_NAME}/"):
                key = var.source.rpartition("/")[2]
                referenced.add(key)
                # Optional keys may be commented out, but are shown.
                assert key in keys or (var.optional and key in text), key
    assert keys <= referenced, f"example keys nobody reads: {keys - referenced}"
    # Applied by mistake, it stops start-up instead of running with placeholders.
    env = {**image_env(), **{k: str(v) for k, v in example["stringData"].items()}}
    env.pop("PATH", None)
    loaded = load_settings(env)
    assert loaded.get("error") == "ImproperlyConfigured", loaded
    # Not part of any build except the dev overlay's own generated Secret.
    base = yaml.safe_load((support.DEPLOY / "base" / "kustomization.yaml").read_text())
    assert "secret.example.yaml" not in base["resources"]
    for build in support.BUILDS:
        if build != "dev":
            assert not support.find(rendered[build], "Secret"), build


def test_dev_secrets_are_obviously_fake_and_match_the_dev_servers(rendered: Rendered) -> None:
    resources = rendered["dev"]
    server = support.server_container(resources)
    env = pod_env_values(server, resources)
    for name in ("DJANGO_SECRET_KEY", "JWT_SECRET", "NOTIFY_API_KEYS"):
        assert "dev-only" in env[name], name
    database = urlsplit(env["DATABASE_URL"])
    assert "dev-only" in (database.password or "")
    postgres = support.one(resources, "StatefulSet", "postgres")
    pg_pod = postgres["spec"]["template"]["spec"]
    pg_secret_name = pg_pod["containers"][0]["envFrom"][0]["secretRef"]["name"]
    pg_secret = support._decoded_secret(support.one(resources, "Secret", pg_secret_name))
    assert database.username == pg_secret["POSTGRES_USER"]
    assert database.password == pg_secret["POSTGRES_PASSWORD"]
    assert database.path.lstrip("/") == pg_secret["POSTGRES_DB"]
    assert database.hostname == support.one(resources, "Service", "postgres")["metadata"]["name"]
    assert postgres["spec"]["volumeClaimTemplates"], "PostgreSQL needs a volume"
    redis = urlsplit(env["REDIS_URL"])
    redis_service = support.one(resources, "Service", "redis")
    assert redis.hostname == redis_service["metadata"]["name"]
    assert redis.port in {p["port"] for p in redis_service["spec"]["ports"]}
    assert support.one(resources, "StatefulSet", "redis")["spec"]["replicas"] == 1


# --------------------------------------------------------------------------- probes, ports


@pytest.mark.parametrize("build", list(support.BUILDS))
def test_probes_hit_the_operations_endpoints_on_the_served_port(
    build: str, rendered: Rendered
) -> None:
    server = support.server_container(rendered[build])
    expected = {
        "livenessProbe": ("/healthz", ops.healthz),
        "readinessProbe": ("/readyz", ops.readyz),
        "startupProbe": ("/healthz", ops.healthz),
    }
    for probe_name, (path, view) in expected.items():
        probe = server.container[probe_name]
        http_get = probe["httpGet"]
        assert http_get["path"] == path, probe_name
        try:
            match = resolve(http_get["path"])
        except Resolver404:
            pytest.fail(f"{probe_name} {http_get['path']} is no URL of service/urls.py")
        assert match.func is view, probe_name
        assert container_port(server, http_get["port"]) == image_port(), probe_name
        assert http_get.get("scheme", "HTTP") == "HTTP"
    ports = [p["containerPort"] for p in server.container["ports"]]
    assert ports == [image_port()]
    assert server.container.get("command") is None, "the server runs the image's CMD"
    assert server.container.get("args") is None, "the server runs the image's CMD"


@pytest.mark.parametrize("build", list(support.BUILDS))
def test_probes_and_scrapes_get_past_allowed_hosts(build: str, rendered: Rendered) -> None:
    """Kubelet probes (and Prometheus) send the pod IP as Host: ALLOWED_HOSTS must take
    it, or the probe must send a Host header that it takes."""
    resources = rendered[build]
    server = support.server_container(resources)
    hosts = support.container_env(server, resources)["ALLOWED_HOSTS"].value
    assert hosts is not None
    allowed = [h.strip() for h in hosts.split(",") if h.strip()]
    for probe_name in ("livenessProbe", "readinessProbe", "startupProbe"):
        headers = server.container[probe_name]["httpGet"].get("httpHeaders", [])
        host = next((h["value"] for h in headers if h["name"].lower() == "host"), "10.244.3.17")
        assert validate_host(host.rsplit(":", 1)[0], allowed), (probe_name, host, allowed)
    if support.find(resources, "ServiceMonitor"):
        assert validate_host("10.244.3.17", allowed), "Prometheus scrapes by pod IP"


@pytest.mark.parametrize("build", list(support.BUILDS))
def test_shutdown_fits_in_the_grace_period(build: str, rendered: Rendered) -> None:
    resources = rendered[build]
    server = support.server_container(resources)
    env = support.container_env(server, resources)
    drain = float(env["NOTIFY_DRAIN_SECONDS"].value or 5) if "NOTIFY_DRAIN_SECONDS" in env else 5
    pre_stop = server.container["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] in ("sleep", "/bin/sleep"), pre_stop
    sleep = float(pre_stop[1])
    assert 1 <= sleep <= 15
    graceful = support.option(image_cmd(), "--timeout-graceful-shutdown")
    assert graceful is not None, "uvicorn's graceful shutdown must be bounded"
    grace = server.pod_spec["terminationGracePeriodSeconds"]
    assert grace > drain + sleep + float(graceful), (grace, drain, sleep, graceful)
    assert grace > drain + sleep


@pytest.mark.parametrize("build", list(support.BUILDS))
def test_uvicorn_frame_limit_is_not_below_the_services(build: str, rendered: Rendered) -> None:
    resources = rendered[build]
    env = support.container_env(support.server_container(resources), resources)
    service_limit = int(env["NOTIFY_WS_MAX_FRAME_BYTES"].value or 65536)
    uvicorn_limit = support.option(image_cmd(), "--ws-max-size")
    assert uvicorn_limit is not None and int(uvicorn_limit) >= service_limit


# --------------------------------------------------------------------------- security


@pytest.mark.parametrize("build", list(support.BUILDS))
def test_every_notify_push_container_is_locked_down(build: str, rendered: Rendered) -> None:
    runtime = support.dockerfile_stages()[-1]
    user = runtime.last("USER")
    assert user is not None
    uid, _, gid = user.args.partition(":")
    for app in support.app_containers(rendered[build]):
        pod = app.pod_spec
        pod_ctx = pod.get("securityContext", {})
        ctx = app.container.get("securityContext", {})
        assert pod_ctx.get("runAsNonRoot") is True or ctx.get("runAsNonRoot") is True, app.label
        assert str(pod_ctx.get("runAsUser")) == uid, app.label
        assert str(pod_ctx.get("runAsGroup")) == (gid or uid), app.label
        seccomp = ctx.get("seccompProfile") or pod_ctx.get("seccompProfile") or {}
        assert seccomp.get("type") == "RuntimeDefault", app.label
        assert ctx.get("readOnlyRootFilesystem") is True, app.label
        assert ctx.get("allowPrivilegeEscalation") is False, app.label
        assert ctx.get("capabilities", {}).get("drop") == ["ALL"], app.label
        assert not ctx.get("capabilities", {}).get("add"), app.label
        assert ctx.get("privileged") in (None, False), app.label
        mounts = {m["mountPath"]: m["name"] for m in app.container.get("volumeMounts", [])}
        assert "/tmp" in mounts, f"{app.label}: /tmp must be writable"
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        assert "emptyDir" in volumes[mounts["/tmp"]], app.label
        assert pod.get("automountServiceAccountToken") is False, app.label
        assert pod.get("enableServiceLinks") is False, app.label
        assert "hostNetwork" not in pod and "hostPID" not in pod, app.label
        resources = app.container.get("resources", {})
        assert resources.get("requests", {}).get("cpu"), app.label
        assert resources.get("requests", {}).get("memory"), app.label
        assert resources.get("limits", {}).get("memory"), app.label


@pytest.mark.parametrize("build", list(support.BUILDS))
def test_all_notify_push_containers_run_one_image(build: str, rendered: Rendered) -> None:
    images = {app.container["image"] for app in support.app_containers(rendered[build])}
    assert len(images) == 1, images
    image = images.pop()
    assert ":" in image.rsplit("/", 1)[-1] and not image.endswith(":latest"), image
    policies = {
        app.container.get("imagePullPolicy") for app in support.app_containers(rendered[build])
    }
    assert policies == {"IfNotPresent"}


# --------------------------------------------------------------------------- the Deployment


@pytest.mark.parametrize("build", list(support.BUILDS))
def test_rollout_and_scaling(build: str, rendered: Rendered) -> None:
    resources = rendered[build]
    deployment = support.one(resources, "Deployment", "notify-push")
    strategy = deployment["spec"]["strategy"]
    assert strategy["type"] == "RollingUpdate"
    assert strategy["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
    # The HPA owns the replica count (an applied spec.replicas would fight it).
    assert "replicas" not in deployment["spec"]
    hpa = support.one(resources, "HorizontalPodAutoscaler")
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", "notify-push")
    assert hpa["spec"]["minReplicas"] >= 2
    assert hpa["spec"]["maxReplicas"] > hpa["spec"]["minReplicas"]
    metrics = [m["resource"]["name"] for m in hpa["spec"]["metrics"] if m["type"] == "Resource"]
    assert "cpu" in metrics
    server = support.server_container(resources)
    assert server.container["resources"]["requests"]["cpu"], "CPU scaling needs a request"
    if build == "production":
        base_hpa = support.one(rendered["base"], "HorizontalPodAutoscaler")
        assert hpa["spec"]["minReplicas"] > base_hpa["spec"]["minReplicas"]


def server_policies(resources: list[support.Resource]) -> list[support.Resource]:
    """The NetworkPolicies for the server pods (by their component label; the
    push-worker component brings its own for its pods, tests/deploy/test_push_worker.py)."""
    return [
        p
        for p in support.find(resources, "NetworkPolicy")
        if p["metadata"].get("labels", {}).get("app.kubernetes.io/component") == "server"
    ]


@pytest.mark.parametrize("build", list(support.BUILDS))
def test_selectors_pick_the_server_pods_only(build: str, rendered: Rendered) -> None:
    resources = rendered[build]
    deployment = support.one(resources, "Deployment", "notify-push")
    server_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert support.labels_match(deployment["spec"]["selector"], server_labels)
    other_pods = [
        (support.kind_name(r), t["metadata"].get("labels", {}))
        for r in resources
        if r is not deployment and (t := support.pod_template(r)) is not None
    ]
    service = support.one(resources, "Service", "notify-push")
    selectors = {
        "Service": {"matchLabels": service["spec"]["selector"]},
        "PodDisruptionBudget": support.one(resources, "PodDisruptionBudget")["spec"]["selector"],
    }
    for policy in server_policies(resources):
        selectors[support.kind_name(policy)] = policy["spec"]["podSelector"]
    for i, constraint in enumerate(
        deployment["spec"]["template"]["spec"].get("topologySpreadConstraints", [])
    ):
        selectors[f"topologySpreadConstraints[{i}]"] = constraint["labelSelector"]
    for what, selector in selectors.items():
        assert support.labels_match(selector, server_labels), what
        for name, labels in other_pods:
            assert not support.labels_match(selector, labels), f"{what} also selects {name}"
    spread_keys = {
        c["topologyKey"]
        for c in deployment["spec"]["template"]["spec"]["topologySpreadConstraints"]
    }
    assert {"kubernetes.io/hostname", "topology.kubernetes.io/zone"} <= spread_keys
    pdb = support.one(resources, "PodDisruptionBudget")["spec"]
    assert pdb.get("maxUnavailable") == 1 or pdb.get("minAvailable") is not None


@pytest.mark.parametrize("build", list(support.BUILDS))
def test_service_ingress_and_network_policy_reach_the_port(build: str, rendered: Rendered) -> None:
    resources = rendered[build]
    server = support.server_container(resources)
    service = support.one(resources, "Service", "notify-push")
    by_name = {p["name"]: p for p in service["spec"]["ports"]}
    for port in service["spec"]["ports"]:
        assert container_port(server, port["targetPort"]) == image_port()
    ingress = support.one(resources, "Ingress", "notify-push")
    assert ingress["spec"]["ingressClassName"] == "nginx"
    annotations = ingress["metadata"]["annotations"]
    prefix = "nginx.ingress.kubernetes.io/"
    for timeout in ("proxy-read-timeout", "proxy-send-timeout"):
        assert int(annotations[prefix + timeout]) >= 3600, timeout
    paths = set()
    for rule in ingress["spec"]["rules"]:
        for item in rule["http"]["paths"]:
            backend = item["backend"]["service"]
            assert backend["name"] == "notify-push"
            assert backend["port"].get("name") in by_name or backend["port"].get("number") in {
                p["port"] for p in service["spec"]["ports"]
            }
            paths.add(item["path"])
    # The API, the socket and the docs' static files; never /metrics, /healthz, /readyz.
    assert {"/api", "/ws", "/static"} <= paths
    assert "/" not in paths
    for probe in ("/metrics", "/healthz", "/readyz"):
        assert not any(probe.startswith(p) for p in paths), probe
    # The publish endpoint is served in front of Django (no URLconf entry).
    assert PUBLISH_PATH == "/api/v1/notifications"
    assert any(PUBLISH_PATH.startswith(p) for p in paths)
    assert resolve("/api/docs")
    for policy in server_policies(resources):
        for rule in policy["spec"].get("ingress", []):
            for port in rule.get("ports", []):
                assert container_port(server, port["port"]) == image_port()
    ingress_from = support.one(resources, "NetworkPolicy", "notify-push")["spec"]["ingress"]
    sources = [peer for rule in ingress_from for peer in rule.get("from", [])]
    assert any(
        (peer.get("namespaceSelector") or {})
        .get("matchLabels", {})
        .get("kubernetes.io/metadata.name")
        == "ingress-nginx"
        for peer in sources
    ), "the ingress controller must get through"


# --------------------------------------------------------------------------- Jobs


def manage_py_command(app: support.AppContainer) -> list[str]:
    command = [*app.container.get("command", []), *app.container.get("args", [])]
    assert command[:2] == ["python", "manage.py"], f"{app.label}: {command}"
    return command[2:]


@pytest.mark.parametrize("build", list(support.BUILDS))
def test_jobs_run_migrate_and_purge(build: str, rendered: Rendered) -> None:
    resources = rendered[build]
    apps = support.app_containers(resources)
    jobs = [a for a in apps if a.workload["kind"] == "Job"]
    assert len(jobs) == 1
    assert manage_py_command(jobs[0]) == ["migrate", "--noinput"]
    assert jobs[0].pod_spec["restartPolicy"] in ("Never", "OnFailure")
    assert jobs[0].workload["spec"]["backoffLimit"] >= 1

    crons = [a for a in apps if a.workload["kind"] == "CronJob"]
    assert len(crons) == 1
    assert manage_py_command(crons[0])[0] == "purge_notifications"
    cron = crons[0].workload["spec"]
    assert cron["concurrencyPolicy"] == "Forbid"
    assert cron.get("startingDeadlineSeconds")
    commands = support.REPO / "notifications" / "management" / "commands"
    assert (commands / "purge_notifications.py").is_file()

    # The server only waits for the migrations; it never applies them.
    inits = [a for a in apps if a.init]
    assert len(inits) == 1
    command = inits[0].container["command"]
    assert command[:2] == ["sh", "-c"], command
    assert "python manage.py migrate --check --noinput" in command[2]
    assert not re.search(r"manage\.py migrate(?! --check)", command[2]), "it must not migrate"
    assert "migrate" not in " ".join(image_cmd())
    docs = (support.REPO / "docs" / "deploy.md").read_text()
    assert "kubectl -n notify delete job notify-push-migrate --ignore-not-found" in docs


def test_production_uses_external_services_and_dev_brings_its_own(rendered: Rendered) -> None:
    assert not support.find(rendered["production"], "StatefulSet")
    kinds = {(r["kind"], r["metadata"]["name"]) for r in rendered["dev"]}
    assert {("StatefulSet", "postgres"), ("StatefulSet", "redis")} <= kinds
    namespaces = {r["metadata"].get("namespace") for r in rendered["production"]}
    assert namespaces == {"notify"}
    dev_namespaces = {
        r["metadata"].get("namespace") for r in rendered["dev"] if r["kind"] != "Namespace"
    }
    assert dev_namespaces == {"notify-dev"}


def test_docs_cover_the_custom_metric_and_the_steps() -> None:
    docs = (support.REPO / "docs" / "deploy.md").read_text()
    for needle in (
        "notify_sockets_open",
        "prometheus-adapter",
        "kind load docker-image",
        "migrate --noinput",
        "REDIS_SENTINELS",
        "REDIS_SENTINEL_MASTER",
        "since",
        "1012",
        "performance.md",
    ):
        assert needle in docs, needle
    hpa = (support.DEPLOY / "base" / "hpa.yaml").read_text()
    assert "notify_sockets_open" in hpa
    readme = (support.REPO / "README.md").read_text()
    assert re.search(r"\(docs/deploy\.md\)", readme)
