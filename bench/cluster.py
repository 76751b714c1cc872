"""``--spawn N``: uvicorn processes plus Redis (and PostgreSQL) on loopback.

Uses the same real-process helpers as the test suite
(``tests/support/servers.py``); nothing is started unless asked, and
everything started is stopped by :meth:`Cluster.close`.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import shutil
import string
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # `tests.support.servers` lives in the repo
    sys.path.insert(0, str(REPO_ROOT))

from tests.deploy.support import dockerfile_stages, exec_form  # noqa: E402
from tests.support.redis_cluster import RedisCluster  # noqa: E402
from tests.support.servers import LiveServer, PostgresServer, RedisServer  # noqa: E402

# A lighter configuration than the image's, offered only under this label:
# uvicorn's access log off (the image logs every request at INFO through the
# token-scrubbing filter).
LIGHT_ARGS = ("--no-access-log",)
PUBLISHER_NAME = "bench"


def image_uvicorn_args() -> list[str]:
    """The Dockerfile's CMD after ``uvicorn APP``, without ``--host``/``--port``.

    The bench serves exactly what the image serves (the spawned servers bind
    127.0.0.1 on a free port instead).
    """
    cmd = dockerfile_stages()[-1].last("CMD")
    if cmd is None:
        raise RuntimeError("the Dockerfile has no CMD")
    argv = exec_form(cmd.args)[2:]  # drop "uvicorn", "service.asgi:application"
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg in ("--host", "--port"):
            skip = True
        else:
            out.append(arg)
    return out


def random_secret(length: int) -> str:
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(length))


@dataclass
class LogScan:
    """What a server's log says about the run: errors, warnings, HTTP 500s."""

    errors: int = 0
    warnings: int = 0
    tracebacks: int = 0
    http_500: int = 0
    samples: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "errors": self.errors,
            "warnings": self.warnings,
            "tracebacks": self.tracebacks,
            "http_500": self.http_500,
            "samples": self.samples,
        }


def scan_log(text: str, max_samples: int = 8) -> LogScan:
    """Count ERROR/CRITICAL and WARNING records, tracebacks and 500 answers.

    The service logs JSON lines (``level``, ``logger``, ``message``, ``exc``);
    plain-text lines (uvicorn before Django set up logging, tracebacks printed
    by a crash) are matched by keyword.
    """
    scan = LogScan()
    seen: set[str] = set()

    def sample(line: str) -> None:
        key = line[:160]
        if key not in seen and len(scan.samples) < max_samples:
            seen.add(key)
            scan.samples.append(line[:600])

    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        level = ""
        message = line
        exc = ""
        if line.startswith("{"):
            try:
                entry = json.loads(line)
            except ValueError:
                entry = None
            if isinstance(entry, dict):
                level = str(entry.get("level", "")).upper()
                message = str(entry.get("message", ""))
                exc = str(entry.get("exc", ""))
        else:
            head = line.split(":", 1)[0].split()[0] if line.split() else ""
            if head.upper() in ("ERROR", "CRITICAL", "WARNING"):
                level = head.upper()
        if "Traceback (most recent call last)" in line or "Traceback" in exc:
            scan.tracebacks += 1
        is_500 = (
            "Internal Server Error" in message or '" 500' in message or " 500 Internal" in message
        )
        if is_500:
            scan.http_500 += 1
        if level in ("ERROR", "CRITICAL"):
            scan.errors += 1
            sample(line)
        elif level == "WARNING":
            scan.warnings += 1
            sample(line)
        elif is_500 or line.startswith("Traceback"):
            sample(line)
    return scan


class Cluster:
    """N app servers sharing Redis and one database, all on 127.0.0.1."""

    def __init__(
        self,
        n: int,
        *,
        redis: bool = True,
        redis_cluster: bool = False,
        postgres: bool = False,
        server_env: Mapping[str, str] | None = None,
        uvicorn_args: Sequence[str] = (),
        light: bool = False,
        startup_timeout: float = 60.0,
    ) -> None:
        if n < 1:
            raise ValueError("--spawn needs at least 1 server")
        if n > 1 and not redis:
            raise ValueError("several servers need Redis (the in-process layer is per process)")
        self.n = n
        self.light = light
        self.api_key = random_secret(40)
        self.jwt_secret = random_secret(48)
        self.redis: RedisServer | None = None
        # --redis-cluster: 3 masters + 3 replicas on loopback instead of one server.
        self.redis_cluster: RedisCluster | None = None
        self.postgres: PostgresServer | None = None
        self.servers: list[LiveServer] = []
        self.tmp_dir = Path(tempfile.mkdtemp(prefix="bench-"))
        self._log_offsets: dict[int, int] = {}
        self._crashed: list[str] | None = None
        try:
            if redis and redis_cluster:
                self.redis_cluster = RedisCluster()
            elif redis:
                self.redis = RedisServer()
            if postgres:
                # Production durability: every commit flushed before it is acked.
                self.postgres = PostgresServer(durable=True)
                database_url = self.postgres.url
            else:
                # One SQLite file for every process; the app puts it in WAL mode.
                database_url = f"sqlite:///{self.tmp_dir / 'bench.sqlite3'}"
            env: dict[str, str] = {
                "DEBUG": "false",
                "DJANGO_SECRET_KEY": random_secret(50),
                "NOTIFY_API_KEYS": f"{PUBLISHER_NAME}:{self.api_key}",
                "JWT_SECRET": self.jwt_secret,
                "NOTIFY_PUBLISH_RATE": "1000000/s",
                "DATABASE_URL": database_url,
                # The image's logging (its defaults, stated so that the bench
                # process's own environment cannot change them).
                "LOG_LEVEL": "INFO",
                "NOTIFY_LOG_FORMAT": "json",
            }
            if self.redis is not None:
                env["REDIS_URL"] = self.redis.url
            if self.redis_cluster is not None:
                env["REDIS_CLUSTER_URL"] = self.redis_cluster.url
            env.update(server_env or {})
            self.env = env
            args = (*image_uvicorn_args(), *(LIGHT_ARGS if light else ()), *uvicorn_args)
            for i in range(n):
                server = LiveServer(
                    env,
                    migrate=(i == 0),  # one shared database: migrate once
                    extra_args=args,
                    ws=None,  # the image's CMD names its --ws
                    startup_timeout=startup_timeout,
                )
                self.servers.append(server)
            for server in self.servers:
                self._log_offsets[id(server)] = len(server.log_text())
        except BaseException:
            self.close()
            raise

    @property
    def urls(self) -> list[str]:
        return [s.url for s in self.servers]

    @property
    def server_pids(self) -> list[int]:
        return [s.pid for s in self.servers]

    @property
    def redis_pid(self) -> int | None:
        return self.redis.pid if self.redis is not None and self.redis.is_running else None

    @property
    def redis_addresses(self) -> list[str]:
        """host:port of every Redis node (cluster: masters and replicas), for INFO."""
        if self.redis_cluster is not None:
            return [f"{s.host}:{s.port}" for s in self.redis_cluster.servers]
        if self.redis is not None:
            return [f"{self.redis.host}:{self.redis.port}"]
        return []

    @property
    def redis_topology(self) -> str:
        if self.redis_cluster is not None:
            return "cluster: 3 masters + 3 replicas"
        return "standalone" if self.redis is not None else "none"

    @property
    def database(self) -> str:
        return "postgres" if self.postgres is not None else "sqlite"

    @property
    def config(self) -> str:
        """What the servers run: the image's CMD, or the labelled lighter one."""
        return "light: image CMD with --no-access-log" if self.light else "image"

    @property
    def postgres_settings(self) -> dict[str, str] | None:
        if self.postgres is None:
            return None
        keys = ("fsync", "synchronous_commit", "full_page_writes")
        return {k: self.postgres.settings[k] for k in keys}

    def mark_logs(self) -> None:
        """Scan only what is logged from now on."""
        for server in self.servers:
            self._log_offsets[id(server)] = len(server.log_text())

    def scan_logs(self) -> dict[str, Any]:
        """Per-server and total log findings since the last :meth:`mark_logs`."""
        per_server = []
        total = LogScan()
        for server in self.servers:
            text = server.log_text()[self._log_offsets.get(id(server), 0) :]
            scan = scan_log(text)
            per_server.append({"url": server.url, **scan.as_dict()})
            total.errors += scan.errors
            total.warnings += scan.warnings
            total.tracebacks += scan.tracebacks
            total.http_500 += scan.http_500
            for s in scan.samples:
                if len(total.samples) < 8:
                    total.samples.append(s)
        return {"total": total.as_dict(), "servers": per_server}

    def stop_servers(self) -> dict[str, int | None]:
        """Stop the app servers gracefully (SIGTERM) so shutdown problems reach the logs.

        Returns url -> exit code; call before :meth:`scan_logs` / :meth:`close`.
        """
        self._crashed = self.crashed()
        codes: dict[str, int | None] = {}
        for server in self.servers:
            try:
                codes[server.url] = server.stop()
            except Exception:
                codes[server.url] = None
        return codes

    def crashed(self) -> list[str]:
        """URLs of servers that died on their own (before :meth:`stop_servers`)."""
        if self._crashed is not None:
            return self._crashed
        return [s.url for s in self.servers if not s.is_running]

    def close(self) -> None:
        for server in reversed(self.servers):
            with contextlib.suppress(Exception):
                server.close()
        if self.postgres is not None:
            with contextlib.suppress(Exception):
                self.postgres.close()
        if self.redis is not None:
            with contextlib.suppress(Exception):
                self.redis.close()
        if self.redis_cluster is not None:
            with contextlib.suppress(Exception):
                self.redis_cluster.close()
        shutil.rmtree(self.tmp_dir, ignore_errors=True)

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
