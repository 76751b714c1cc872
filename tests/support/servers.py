"""Real, throw-away servers for tests: ``redis-server``, PostgreSQL and the app under uvicorn.

Nothing here is mocked. Every server listens on 127.0.0.1 on a free port, lives in
its own temporary directory, runs in its own session (so a Ctrl-C of pytest is not
delivered to it) and is stopped at interpreter exit if a test forgot to.

All three classes start in the constructor (``autostart=True``) and are context
managers (``__exit__`` calls :meth:`close`). Redis and PostgreSQL live in
tests/support/redis_server.py and postgres_server.py, their shared process
plumbing in processes.py; this module is the one tests import them from.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol

import httpx

from tests.support.postgres_server import (
    DURABLE_SETTINGS,
    TEST_ONLY_FAST_SETTINGS,
    PostgresServer,
    find_pg_bindir,
)
from tests.support.processes import (
    LOCALHOST,
    ManagedServer,
    _log_tail,
    _shutdown,
    _signal_group,
    _spawn,
    free_port,
)
from tests.support.redis_server import RedisServer

__all__ = [
    "DURABLE_SETTINGS",
    "LOCALHOST",
    "REPO_ROOT",
    "TEST_ONLY_FAST_SETTINGS",
    "LiveServer",
    "LiveServerFactory",
    "PostgresServer",
    "RedisServer",
    "find_pg_bindir",
    "free_port",
]

REPO_ROOT = Path(__file__).resolve().parents[2]
# The WebSocket protocol the image serves with (Dockerfile: --ws).
LEAN_WS = "service.ws_protocol:LeanWebSocketProtocol"
# A server log line that reports an error, in either NOTIFY_LOG_FORMAT: JSON
# (production's default) or text (dev mode's: "12:00:01 ERROR    logger  ...").
LOG_ERROR_MARKERS = (
    "Traceback",
    '"level": "ERROR"',
    '"level": "CRITICAL"',
    " ERROR    ",
    " CRITICAL ",
    '" 500',
)

# Environment variables a LiveServer never inherits from the test process; pass
# them explicitly in ``env`` when the server should see them.
_NOT_INHERITED = ("DATABASE_URL", "REDIS_URL", "REDIS_CLUSTER_URL")


class LiveServer(ManagedServer):
    """The real app: ``python -m uvicorn service.asgi:application`` on ``127.0.0.1:<port>``.

    ``env`` is merged over ``os.environ``, except that ``DATABASE_URL``,
    ``REDIS_URL`` and ``REDIS_CLUSTER_URL`` are *not* inherited (pass them in
    ``env``). With ``migrate=True`` ``manage.py migrate --noinput`` runs once, with the
    same env, before the first
    start. ``start()`` waits until ``GET /healthz`` answers 200. Output of both
    goes to ``log_path`` (see :meth:`log_text`). ``ws`` is uvicorn's ``--ws``:
    the image's lean protocol unless given (None: uvicorn's default).
    """

    def __init__(
        self,
        env: Mapping[str, str] | None = None,
        *,
        migrate: bool = True,
        port: int | None = None,
        app: str = "service.asgi:application",
        extra_args: Sequence[str] = (),
        ws: str | None = LEAN_WS,
        cwd: str | Path = REPO_ROOT,
        health_path: str = "/healthz",
        startup_timeout: float = 20.0,
        autostart: bool = True,
    ) -> None:
        self.host: str = LOCALHOST
        self.port: int = port if port is not None else free_port()
        self.url: str = f"http://{self.host}:{self.port}"
        self.ws_url: str = f"ws://{self.host}:{self.port}"
        self.app = app
        self.extra_args: tuple[str, ...] = tuple(extra_args)
        self.ws = ws
        self.cwd: Path = Path(cwd)
        self.health_path = health_path
        self.startup_timeout = startup_timeout
        self.migrate = migrate
        merged = {k: v for k, v in os.environ.items() if k not in _NOT_INHERITED}
        merged.setdefault("PYTHONUNBUFFERED", "1")
        merged.update(env or {})
        self.env: dict[str, str] = merged
        self.tmp_dir: Path = Path(tempfile.mkdtemp(prefix="test-live-"))
        self.log_path: Path = self.tmp_dir / "server.log"
        self.log_path.touch()
        self._migrated = False
        self._autostart(autostart)

    @property
    def uvicorn_args(self) -> tuple[str, ...]:
        """uvicorn's arguments after the app, host and port."""
        return (*(("--ws", self.ws) if self.ws else ()), *self.extra_args)

    @property
    def returncode(self) -> int | None:
        """Exit code of the last process (None while running or if never started)."""
        return None if self._proc is None else self._proc.poll()

    def run_manage(self, *args: str, timeout: float = 120.0) -> None:
        """``python manage.py ARGS`` with the server's env and cwd; output to the log."""
        with self.log_path.open("ab") as log:
            log.write(f"--- manage.py {' '.join(args)}\n".encode())
            log.flush()
            result = subprocess.run(
                [sys.executable, "manage.py", *args],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.cwd,
                timeout=timeout,
                check=False,
            )
        if result.returncode != 0:
            raise RuntimeError(
                f"manage.py {' '.join(args)} failed with code {result.returncode}:\n"
                f"{_log_tail(self.log_path)}"
            )

    def start(self) -> None:
        """(Migrate, first time only,) start uvicorn and wait for /healthz == 200."""
        self._check_open()
        if self.is_running:
            return
        if self.migrate and not self._migrated:
            self.run_manage("migrate", "--noinput")
            self._migrated = True
        with self.log_path.open("ab") as log:
            log.write(b"--- uvicorn start\n")
        args = [
            sys.executable, "-m", "uvicorn", self.app,
            "--host", self.host,
            "--port", str(self.port),
            *self.uvicorn_args,
        ]  # fmt: skip
        self._proc = _spawn(args, log_path=self.log_path, env=self.env, cwd=self.cwd)
        health_url = self.url + self.health_path
        with httpx.Client(timeout=2.0, trust_env=False) as client:
            self._wait_ready(
                lambda: _answers_200(client, health_url),
                what=f"uvicorn ({health_url})",
                goal="answer 200",
                retry_on=(httpx.HTTPError,),
                interval=0.1,
            )

    def _abandon_start(self) -> None:
        self.kill()  # hung: no graceful shutdown to wait for

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM (graceful), wait up to ``timeout`` s, then SIGKILL. Returns the exit code."""
        if self._proc is None:
            return None
        return _shutdown(self._proc, signal.SIGTERM, timeout)

    def kill(self) -> int | None:
        """SIGKILL the server and its process group (a crash). Returns the exit code."""
        if self._proc is None:
            return None
        _signal_group(self._proc, signal.SIGKILL)
        return _shutdown(self._proc, signal.SIGKILL, 5.0)

    def terminate(self) -> None:
        """Send SIGTERM and return at once (see :meth:`wait`)."""
        if self._proc is not None and self._proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self._proc.send_signal(signal.SIGTERM)

    def wait(self, timeout: float | None = 15.0) -> int:
        """Wait for the process to exit; returns its exit code (TimeoutExpired on timeout)."""
        if self._proc is None:
            raise RuntimeError("server not started")
        return self._proc.wait(timeout=timeout)

    def restart(self) -> None:
        """Stop if still running, then start again on the same port (no re-migrate)."""
        self.stop()
        self.start()


def _answers_200(client: httpx.Client, url: str) -> str | None:
    response = client.get(url)
    if response.status_code == 200:
        return None
    return f"HTTP {response.status_code}: {response.text[:200]}"


class LiveServerFactory(Protocol):
    """Type of the ``live_server_factory`` fixture."""

    def __call__(
        self,
        env: Mapping[str, str] | None = None,
        migrate: bool = True,
        *,
        port: int | None = None,
        extra_args: Sequence[str] = (),
        startup_timeout: float = 20.0,
    ) -> LiveServer: ...
