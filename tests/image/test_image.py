"""The Dockerfile built for real, with podman on a base made from Debian's
packages (scripts/build-image.sh), then checked from its config and its
filesystem, and run: read-only root, non-root, serves /healthz and /readyz,
stops cleanly on SIGTERM.

Slow (a first build takes a few minutes: mmdebstrap, then pip): marker
``image``; ``pytest -m image`` runs these alone, ``-m "not image"`` skips them.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import tarfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.deploy import support

# A first build downloads Debian packages and wheels: minutes, not seconds.
pytestmark = [pytest.mark.image, pytest.mark.live, pytest.mark.timeout(1800)]

TAG = "localhost/notify-push:tests"
PODMAN = ["podman", "--runtime", "runc"]
UID = "10001"
COMPILERS = ("gcc", "cc", "c++", "g++", "clang", "tcc", "cpp", "ld", "as", "make")


def podman(*args: str, timeout: float = 120, check: bool = True) -> str:
    result = subprocess.run(
        [*PODMAN, *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check:
        assert result.returncode == 0, f"podman {' '.join(args)}:\n{result.stderr}"
    return result.stdout


def ulimits() -> list[str]:
    nofile = subprocess.run(
        ["bash", "-c", "ulimit -n"], capture_output=True, text=True, check=True
    ).stdout.strip()
    return ["--ulimit", f"nofile={nofile}:{nofile}", "--ulimit", "nproc=4096:4096"]


@pytest.fixture(scope="module")
def image() -> str:
    result = subprocess.run(
        ["bash", str(support.REPO / "scripts" / "build-image.sh")],
        env={**os.environ, "TAG": TAG},
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().splitlines()[-1] == TAG
    return TAG


@pytest.fixture(scope="module")
def config(image: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = json.loads(podman("image", "inspect", image))
    return found[0]


@pytest.fixture(scope="module")
def files(image: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, tarfile.TarInfo]:
    """Every path of the image's filesystem (``podman export`` of a container)."""
    name = f"notify-fs-{uuid.uuid4().hex[:8]}"
    podman("create", "--name", name, image)
    archive = tmp_path_factory.mktemp("image") / "fs.tar"
    try:
        podman("export", "-o", str(archive), name, timeout=600)
    finally:
        podman("rm", "-f", name)
    with tarfile.open(archive) as tar:
        return {member.name.lstrip("./").lstrip("/"): member for member in tar.getmembers()}


def test_the_config_is_the_dockerfiles(config: dict[str, Any]) -> None:
    stage = support.dockerfile_stages()[-1]
    cmd = stage.last("CMD")
    assert cmd is not None
    assert config["Config"]["Cmd"] == support.exec_form(cmd.args)
    assert config["Config"]["User"] == f"{UID}:{UID}"
    assert config["Config"]["WorkingDir"] == "/app"
    assert "8000/tcp" in config["Config"]["ExposedPorts"]
    assert config["Config"].get("StopSignal") == "SIGTERM"
    env = dict(item.split("=", 1) for item in config["Config"]["Env"])
    assert env["DEBUG"] == "false"
    assert env["PATH"].startswith("/opt/venv/bin:")
    assert "/healthz" in " ".join(config["Healthcheck"]["Test"])


def test_no_compilers_and_nothing_but_the_app(files: dict[str, tarfile.TarInfo]) -> None:
    binaries = {Path(p).name for p in files if p.startswith(("usr/bin/", "usr/local/bin/"))}
    found = {b for b in binaries for c in COMPILERS if b == c or b.endswith("-" + c)}
    found |= {b for b in binaries if b.startswith(("gcc-", "x86_64-linux-gnu-gcc"))}
    assert not found, found
    assert not any(p.startswith("usr/lib/gcc/") and "/cc1" in p for p in files)
    app = {p.split("/")[1] for p in files if p.startswith("app/") and p.count("/") >= 1}
    assert app - {""} == {"manage.py", "service", "notifications", "api", "realtime", "staticfiles"}
    for wanted in (
        "app/staticfiles/admin/css/base.css",
        "app/staticfiles/notify/notify-client.js",
        "opt/venv/bin/uvicorn",
    ):
        assert wanted in files, wanted
    assert any(p.startswith("app/service/__pycache__/") for p in files)  # compiled at build


def test_the_app_is_not_writable_by_its_user(files: dict[str, tarfile.TarInfo]) -> None:
    """Read-only-root friendly: the code and venv belong to root, not to 10001,
    and nothing under them is world-writable."""
    for path, member in files.items():
        if path.startswith(("app/", "opt/venv/")) and not member.issym():
            assert member.uid == 0, path
            assert not member.mode & 0o002, path


@pytest.fixture
def container(image: str) -> Iterator[str]:
    name = f"notify-run-{uuid.uuid4().hex[:8]}"
    env = {
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "NOTIFY_API_KEYS": "shop:" + secrets.token_hex(24),
        "JWT_SECRET": secrets.token_hex(24),
        "DATABASE_URL": "sqlite:////tmp/db.sqlite3",
        "ALLOWED_HOSTS": "localhost,127.0.0.1",
        "ALLOWED_ORIGINS": "https://app.example.com",
    }
    env_args = [arg for key, value in env.items() for arg in ("-e", f"{key}={value}")]
    # Its own network namespace (loopback only): the checks run inside it.
    podman(
        "run", "-d", "--name", name, "--network", "none", "--read-only", "--tmpfs", "/tmp",
        *ulimits(), *env_args, image,
    )  # fmt: skip
    try:
        yield name
    finally:
        podman("rm", "-f", "-t", "0", name, check=False)


def inside(name: str, *argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*PODMAN, "exec", name, *argv], capture_output=True, text=True, timeout=timeout
    )


GET = (
    "import sys, time, urllib.request as u\n"
    "for _ in range(300):\n"
    "    try:\n"
    "        r = u.urlopen(u.Request('http://127.0.0.1:8000' + sys.argv[1],"
    " headers={'Host': 'localhost'}), timeout=3)\n"
    "        print(r.status, r.read().decode()); break\n"
    "    except OSError: time.sleep(0.1)\n"
)


def test_it_runs_read_only_as_its_user_and_serves(container: str) -> None:
    health = inside(container, "python", "-c", GET, "/healthz")
    assert health.stdout.startswith("200 "), health.stdout + health.stderr
    assert inside(container, "id", "-u").stdout.strip() == UID
    # The root filesystem is read-only; /tmp is the one writable place.
    touch = inside(container, "touch", "/app/x")
    assert touch.returncode != 0 and "Read-only file system" in touch.stderr
    migrate = inside(container, "python", "manage.py", "migrate", "--noinput", timeout=300)
    assert migrate.returncode == 0, migrate.stderr
    ready = inside(container, "python", "-c", GET, "/readyz")
    assert ready.stdout.startswith("200 "), ready.stdout + ready.stderr
    # The Dockerfile's HEALTHCHECK, as podman runs it (exit 0: healthy).
    podman("healthcheck", "run", container)
    # SIGTERM: drains and exits 0 well within podman's grace period.
    podman("stop", "-t", "30", container, timeout=90)
    state = json.loads(podman("inspect", container))[0]["State"]
    assert state["ExitCode"] == 0, podman("logs", container)
