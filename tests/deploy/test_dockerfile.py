"""The Dockerfile, read (there is no Docker engine here to build it).

Pinned base, dependencies from the lock, no compiler in the final stage, a
fixed non-root user, a read-only-friendly runtime, the right command.
"""

from __future__ import annotations

import re
import shlex
import tomllib
from importlib import metadata

import pytest
from django.conf import settings
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.deploy import support

STAGES = support.dockerfile_stages()
BUILDER, RUNTIME = STAGES[0], STAGES[-1]
WORKDIR = "/app"


def run_commands(stage: support.Stage) -> str:
    return "\n".join(i.args for i in stage.all("RUN"))


def test_multi_stage_on_one_pinned_slim_python() -> None:
    assert len(STAGES) >= 2
    pattern = re.compile(r"python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?")
    for stage in STAGES:
        assert pattern.fullmatch(stage.base), stage.base
    assert len({stage.base for stage in STAGES}) == 1, "one base, bumped together"
    assert RUNTIME.name == "runtime" and BUILDER.name == "builder"


def test_dependencies_come_from_the_lock_into_a_venv() -> None:
    commands = run_commands(BUILDER)
    assert "-c /build/requirements.lock" in commands
    assert "python -m venv /opt/venv" in commands
    assert "--only-binary=:all:" in commands
    # The one sdist allowed: pure Python, no wheel published (Dockerfile comment).
    assert re.findall(r"--no-binary=(\S+)", commands) == ["http-ece"]
    assert "pip check" in commands
    copied = " ".join(i.args for i in BUILDER.all("COPY"))
    assert "requirements.lock" in copied and "pyproject.toml" in copied
    # The final stage installs nothing: it copies the venv and the app.
    assert "pip install" not in run_commands(RUNTIME)
    assert "apt-get" not in run_commands(RUNTIME)
    for word in ("gcc", "build-essential", "g++", "make "):
        assert word not in run_commands(RUNTIME), word
    copies = [i.args for i in RUNTIME.all("COPY")]
    assert "--from=builder /opt/venv /opt/venv" in copies
    assert f"--from=builder {WORKDIR} {WORKDIR}" in copies


def _lock() -> dict[str, str]:
    pins = {}
    for line in (support.REPO / "requirements.lock").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, sep, version = line.partition("==")
            assert sep, line
            pins[canonicalize_name(name)] = version
    return pins


def test_the_lock_pins_every_runtime_dependency() -> None:
    """The image installs pyproject's dependencies constrained by the lock: every
    package that resolves to must be pinned there, or the build floats."""
    lock = _lock()
    project = tomllib.loads((support.REPO / "pyproject.toml").read_text())["project"]
    todo = [Requirement(r) for r in project["dependencies"]]
    seen: set[str] = set()
    while todo:
        requirement = todo.pop()
        name = canonicalize_name(requirement.name)
        if name in seen:
            continue
        seen.add(name)
        assert name in lock, f"{requirement.name} is not pinned in requirements.lock"
        assert requirement.specifier.contains(lock[name], prereleases=True), (
            f"{requirement} does not allow the locked {lock[name]}"
        )
        for extra in requirement.extras or {""}:
            for raw in metadata.requires(requirement.name) or []:
                dependency = Requirement(raw)
                marker = dependency.marker
                if marker is None or marker.evaluate({"extra": extra}):
                    todo.append(dependency)
    assert {"uvicorn", "uvloop", "httptools", "psycopg-binary", "channels-redis"} <= seen


def test_runtime_user_and_filesystem() -> None:
    user = RUNTIME.last("USER")
    assert user is not None and re.fullmatch(r"\d+(:\d+)?", user.args), "a numeric UID"
    uid = int(user.args.split(":")[0])
    assert uid >= 10000
    assert f"--uid {uid}" in run_commands(RUNTIME)
    env = support.env_of(RUNTIME)
    assert env.get("PYTHONDONTWRITEBYTECODE") == "1"
    assert env.get("PYTHONUNBUFFERED") == "1"
    assert env.get("DEBUG") == "false", "the image fails closed without configuration"
    assert env["PATH"].startswith("/opt/venv/bin:")
    workdir = RUNTIME.last("WORKDIR")
    assert workdir is not None and workdir.args == WORKDIR
    # The USER comes after everything that needs root.
    assert RUNTIME.instructions.index(user) > max(
        RUNTIME.instructions.index(i) for i in RUNTIME.all("RUN")
    )


def test_static_files_and_bytecode_are_baked_in_at_build_time() -> None:
    commands = run_commands(BUILDER)
    assert "manage.py collectstatic --noinput" in commands
    assert "compileall" in commands
    assert (BUILDER.last("WORKDIR") or support.Instruction("", "", 0)).args == WORKDIR
    # STATIC_ROOT is BASE_DIR/staticfiles: /app/staticfiles in the image, copied with /app.
    assert settings.STATIC_ROOT == settings.BASE_DIR / "staticfiles"
    assert settings.BASE_DIR == support.REPO


def test_every_package_and_manage_py_reach_the_image() -> None:
    pyproject = tomllib.loads((support.REPO / "pyproject.toml").read_text())
    packages = [
        p.rstrip("*") for p in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    ]
    copied = {
        source
        for i in BUILDER.all("COPY")
        for source in shlex.split(i.args)[:-1]
        if not source.startswith("--")
    }
    for source in [*packages, "manage.py", "pyproject.toml", "requirements.lock"]:
        assert source in copied, source
        assert support.dockerignore_allows(source), f".dockerignore drops {source}"
        if (support.REPO / source).is_dir():
            assert support.dockerignore_allows(f"{source}/__init__.py"), source
    for kept_out in (
        ".git/HEAD",
        ".venv/bin/python",
        "db.sqlite3",
        "staticfiles/x.css",
        "tests/conftest.py",
        "bench/README.md",
        "deploy/base/deployment.yaml",
        "service/__pycache__/settings.cpython-311.pyc",
        "notifications/db.sqlite3",
    ):
        assert not support.dockerignore_allows(kept_out), kept_out


def test_dockerignore_matching_follows_docker_rules() -> None:
    patterns = ["*", "!service/", "**/__pycache__", "service/secret*"]
    assert support.dockerignore_allows("service/x.py", patterns)
    assert not support.dockerignore_allows("service/a/__pycache__/x.pyc", patterns)
    assert not support.dockerignore_allows("service/secret.txt", patterns)
    assert not support.dockerignore_allows("other/x.py", patterns)


def test_the_command_serves_the_asgi_app_with_the_production_flags() -> None:
    assert RUNTIME.last("ENTRYPOINT") is None
    cmd = support.exec_form((RUNTIME.last("CMD") or support.Instruction("", "", 0)).args)
    assert cmd[:2] == ["uvicorn", "service.asgi:application"]
    expected = {
        "--host": "0.0.0.0",
        "--loop": "uvloop",
        "--http": "httptools",
        "--ws-max-size": "65536",
        "--lifespan": "on",
        "--forwarded-allow-ips": "*",
    }
    for flag, value in expected.items():
        assert support.option(cmd, flag) == value, flag
    assert "--proxy-headers" in cmd
    assert "--workers" not in cmd and "--reload" not in cmd
    port = support.option(cmd, "--port")
    assert port is not None
    exposed = RUNTIME.last("EXPOSE")
    assert exposed is not None and exposed.args == port
    stop = RUNTIME.last("STOPSIGNAL")
    assert stop is not None and stop.args == "SIGTERM"


def test_the_ws_implementation_is_the_one_the_tests_run() -> None:
    """The live tests' servers (LiveServer) use the image's --ws, a subclass of
    websockets-sansio, which uvicorn's `auto` (the in-process tests) resolves to."""
    from uvicorn.protocols.websockets.auto import AutoWebSocketsProtocol
    from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

    from service.ws_protocol import LeanWebSocketProtocol
    from tests.support.servers import LEAN_WS

    cmd = support.exec_form((RUNTIME.last("CMD") or support.Instruction("", "", 0)).args)
    assert AutoWebSocketsProtocol is WebSocketsSansIOProtocol
    assert support.option(cmd, "--ws") == LEAN_WS == "service.ws_protocol:LeanWebSocketProtocol"
    assert issubclass(LeanWebSocketProtocol, WebSocketsSansIOProtocol)


def test_the_healthcheck_asks_healthz_with_python_only() -> None:
    health = RUNTIME.last("HEALTHCHECK")
    assert health is not None
    options, _, command = health.args.partition("CMD ")
    for flag in ("--interval=", "--timeout=", "--start-period=", "--retries="):
        assert flag in options, flag
    argv = support.exec_form(command)
    assert argv[:2] == ["python", "-c"]
    code = argv[2]
    compile(code, "HEALTHCHECK", "exec")
    port = support.option(
        support.exec_form((RUNTIME.last("CMD") or support.Instruction("", "", 0)).args), "--port"
    )
    assert f"http://127.0.0.1:{port}/healthz" in code
    assert "curl" not in health.args and "wget" not in health.args


@pytest.mark.parametrize(
    "text,expected",
    [
        ('FROM a AS b\nRUN x \\\n  # note\n  && y\nCMD ["z"]\n', ["RUN x && y", 'CMD ["z"]']),
        ("# c\nFROM a\n\nENV A=1 \\\n    B=2\n", ["ENV A=1 B=2"]),
    ],
)
def test_the_dockerfile_reader(text: str, expected: list[str]) -> None:
    stages = support.dockerfile_stages(text)
    assert [f"{i.keyword} {i.args}" for i in stages[-1].instructions] == expected


def test_the_reader_resolves_the_base_argument() -> None:
    stages = support.dockerfile_stages("ARG BASE=py:1\nFROM ${BASE} AS b\nRUN x\nFROM ${BASE}\n")
    assert [s.base for s in stages] == ["py:1", "py:1"]
    assert stages[0].name == "b"


def test_both_stages_take_the_base_from_one_build_argument() -> None:
    """scripts/build-image.sh swaps the base (a Debian root filesystem) with it."""
    text = support.DOCKERFILE.read_text()
    assert re.search(r"^ARG BASE=python:3\.11\.\d+-slim-bookworm$", text, re.MULTILINE)
    assert re.findall(r"^FROM (\S+)", text, re.MULTILINE) == ["${BASE}", "${BASE}"]
