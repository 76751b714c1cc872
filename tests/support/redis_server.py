"""A private ``redis-server`` for tests (no persistence, loopback, free port)."""

from __future__ import annotations

import shutil
import signal
import tempfile
from collections.abc import Sequence
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.support.processes import (
    LOCALHOST,
    ManagedServer,
    _shutdown,
    _spawn,
    free_port,
)

__all__ = ["RedisServer"]


class RedisServer(ManagedServer):
    """A private ``redis-server`` (no persistence) on ``127.0.0.1:<port>``.

    ``stop()`` + ``start()`` simulates an outage and a comeback on the same port
    (data is lost: nothing is saved).
    """

    def __init__(
        self,
        *,
        port: int | None = None,
        executable: str | None = None,
        extra_args: Sequence[str] = (),
        startup_timeout: float = 10.0,
        autostart: bool = True,
    ) -> None:
        exe = executable or shutil.which("redis-server")
        if not exe:
            raise RuntimeError("redis-server not found; run `bash scripts/ensure-system-deps.sh`")
        self.executable: str = exe
        self.host: str = LOCALHOST
        self.port: int = port if port is not None else free_port()
        self.url: str = self.url_for(0)
        self.extra_args: tuple[str, ...] = tuple(extra_args)
        self.startup_timeout = startup_timeout
        self.tmp_dir: Path = Path(tempfile.mkdtemp(prefix="test-redis-"))
        self.log_path: Path = self.tmp_dir / "redis.log"
        self._autostart(autostart)

    def url_for(self, db: int) -> str:
        return f"redis://{self.host}:{self.port}/{db}"

    def client(self, db: int = 0, *, retries: int = 0) -> redis.Redis:
        """A new sync client (close it, or use it as a context manager).

        ``retries=0`` (default) makes a refused connection fail at once instead of
        redis-py's default 3 retries with exponential backoff.
        """
        return redis.Redis(
            host=self.host,
            port=self.port,
            db=db,
            socket_connect_timeout=2,
            socket_timeout=5,
            retry=Retry(NoBackoff(), retries),
        )

    def start(self) -> None:
        """Start (again, on the same port) and wait until PING answers. No-op if running."""
        self._check_open()
        if self.is_running:
            return
        args = [
            self.executable,
            "--bind", self.host,
            "--port", str(self.port),
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.tmp_dir),
            "--daemonize", "no",
            "--protected-mode", "no",
            "--loglevel", "notice",
            *self.extra_args,
        ]  # fmt: skip
        self._proc = _spawn(args, log_path=self.log_path, cwd=self.tmp_dir)
        self._wait_ready(
            self._answers_ping,
            what=f"redis-server on port {self.port}",
            goal="answer PING",
            retry_on=(redis.RedisError,),
        )

    def _answers_ping(self) -> str | None:
        # Short timeouts of its own: a server still starting is asked again soon.
        with redis.Redis(
            host=self.host,
            port=self.port,
            socket_connect_timeout=0.5,
            socket_timeout=1,
            retry=Retry(NoBackoff(), 0),
        ) as client:
            return None if client.ping() else "PING not answered"

    def stop(self, timeout: float = 10.0) -> None:
        """Shut the server down (SIGTERM, SIGKILL after ``timeout``). No-op if not running."""
        proc, self._proc = self._proc, None
        if proc is not None:
            _shutdown(proc, signal.SIGTERM, timeout)

    def kill(self) -> None:
        """SIGKILL the server (a crash rather than a clean shutdown)."""
        proc, self._proc = self._proc, None
        if proc is not None:
            _shutdown(proc, signal.SIGKILL, 5.0)
