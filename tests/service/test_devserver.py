"""``make run`` for a person at a terminal: a taken port in one line, a quiet Ctrl-C.

Real processes: ``make run`` itself (what the README says to type), its
uvicorn on a real port, real signals to the whole process group (as a
terminal's Ctrl-C sends them).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.servers import free_port

REPO = Path(__file__).resolve().parents[2]

# `make run` starts a real uvicorn.
pytestmark = pytest.mark.live


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


# A person types `make run` at a shell: no outer make (`make test` runs this
# suite), whose MAKELEVEL would turn make's own lines into `make[1]: ***`.
_NOT_INHERITED = ("DATABASE_URL", "REDIS_URL", "MAKELEVEL", "MAKEFLAGS", "MFLAGS")


def run_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _NOT_INHERITED}
    return {**env, "DEBUG": "1", "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}"}


def test_a_taken_port_is_one_human_line(taken_port: int, tmp_path: Path) -> None:
    result = subprocess.run(
        ["make", "--no-print-directory", "run", f"PORT={taken_port}"],
        cwd=REPO,
        env=run_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode != 0
    assert result.stdout == "", "no banner, no recipe echo for a server that never starts"
    ours = [line for line in result.stderr.splitlines() if not line.startswith("make: ***")]
    assert ours == [
        f"make run: port {taken_port} on 127.0.0.1 is already in use (another `make run`?). "
        f"Stop that server, or pick another port: make run PORT={taken_port + 1}"
    ]


def test_ctrl_c_ends_make_run_quietly(tmp_path: Path) -> None:
    port = free_port()
    seen: list[str] = []
    with subprocess.Popen(
        ["make", "--no-print-directory", "run", f"PORT={port}"],
        cwd=REPO,
        env=run_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    ) as proc:
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                seen.append(line)
                if "Application startup complete" in line:
                    break
            else:
                pytest.fail("make run ended before serving:\n" + "".join(seen))
            os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
            rest = proc.stdout.read()
            proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    output = "".join(seen) + rest
    assert f"open first:           http://127.0.0.1:{port}/demo" in output
    assert "manage.py" not in output.split("a user token:", 1)[0], "no recipe echo"
    assert "make: ***" not in output
    assert "Traceback" not in output
    assert "Application shutdown complete" in rest
    assert not any(line.startswith("{") for line in output.splitlines()), "text logs in dev mode"


def recipe(target: str) -> list[str]:
    """The recipe lines of ``target`` in the Makefile (continuations joined)."""
    text = (REPO / "Makefile").read_text().replace("\\\n", " ")
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"{target}:"))
    body = []
    for line in lines[start + 1 :]:
        if not line.startswith("\t"):
            break
        body.append(line.strip())
    return body


def test_make_run_and_the_install_echo_no_recipe_and_announce_the_install() -> None:
    # The first run installs silently for a minute or two otherwise, then echoes shell.
    for target in ("$(STAMP)", "run"):
        lines = recipe(target)
        assert lines and all(line.startswith("@") for line in lines), (target, lines)
    assert any(line.startswith('@echo "Installing') for line in recipe("$(STAMP)"))
