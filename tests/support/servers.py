"""Real, throw-away servers for tests: ``redis-server``, PostgreSQL and the app under uvicorn.

Nothing here is mocked. Every server listens on 127.0.0.1 on a free port, lives in
its own temporary directory, runs in its own session (so a Ctrl-C of pytest is not
delivered to it) and is stopped at interpreter exit if a test forgot to.

All three classes start in the constructor (``autostart=True``) and are context
managers (``__exit__`` calls :meth:`close`).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pwd
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Protocol, Self

import httpx
import psycopg
import redis
from psycopg import sql
from psycopg.rows import TupleRow
from redis.backoff import NoBackoff
from redis.retry import Retry

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
LOCALHOST = "127.0.0.1"
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


# --------------------------------------------------------------------------- helpers

_handed_out_ports: set[int] = set()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now (never the same one twice per process)."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((LOCALHOST, 0))
            port = int(sock.getsockname()[1])
        if port not in _handed_out_ports:
            _handed_out_ports.add(port)
            return port
    raise RuntimeError("could not find a free TCP port")


class _Closable(Protocol):
    def close(self) -> None: ...


# id(obj) -> obj, in creation order; whatever is still here at exit gets closed.
_open_servers: dict[int, _Closable] = {}


def _register(obj: _Closable) -> None:
    _open_servers[id(obj)] = obj


def _unregister(obj: _Closable) -> None:
    _open_servers.pop(id(obj), None)


@atexit.register
def _close_all_servers() -> None:
    # Newest first: app servers before the Redis/PostgreSQL they talk to.
    for obj in reversed(list(_open_servers.values())):
        with contextlib.suppress(Exception):
            obj.close()


def _log_tail(path: Path, lines: int = 80) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def _spawn(
    args: Sequence[str],
    *,
    log_path: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    run_as: pwd.struct_passwd | None = None,
) -> subprocess.Popen[bytes]:
    """Start a process in a new session, stdout+stderr appended to ``log_path``."""
    # The child gets its own copy of the log fd; ours is closed right away, so
    # nothing is left open for a ResourceWarning.
    with log_path.open("ab") as log:
        if run_as is None:
            return subprocess.Popen(
                list(args),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=None if env is None else dict(env),
                cwd=cwd,
                start_new_session=True,
            )
        return subprocess.Popen(
            list(args),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=None if env is None else dict(env),
            cwd=cwd,
            start_new_session=True,
            user=run_as.pw_uid,
            group=run_as.pw_gid,
            extra_groups=[],
        )


def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    """Send ``sig`` to the whole process group the child leads (start_new_session=True)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def _shutdown(
    proc: subprocess.Popen[bytes],
    sig: signal.Signals = signal.SIGTERM,
    timeout: float = 15.0,
) -> int:
    """Ask ``proc`` to exit with ``sig``; SIGKILL its group after ``timeout`` seconds.

    Always reaps the process and SIGKILLs anything left in its process group
    (e.g. PostgreSQL backends after a killed postmaster).
    """
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _signal_group(proc, signal.SIGKILL)
            proc.wait()
    _signal_group(proc, signal.SIGKILL)
    return proc.returncode


def _world_traversable(path: Path) -> bool:
    """True if every directory from / down to ``path`` has the o+x bit (reachable by any user)."""
    path = path.resolve()
    for part in [path, *path.parents]:
        try:
            if not part.stat().st_mode & stat.S_IXOTH:
                return False
        except OSError:
            return False
    return True


def find_pg_bindir() -> Path:
    """Directory holding ``initdb`` and ``postgres``.

    ``$PG_BINDIR`` if set, else the highest ``/usr/lib/postgresql/<ver>/bin``
    (Debian), else wherever ``initdb`` is on ``PATH``.
    """
    env_dir = os.environ.get("PG_BINDIR")
    if env_dir:
        return Path(env_dir)

    def version_key(p: Path) -> tuple[int, ...]:
        return tuple(int(n) for n in re.findall(r"\d+", p.parent.name)) or (0,)

    candidates = [
        p
        for p in Path("/usr/lib/postgresql").glob("*/bin")
        if (p / "initdb").is_file() and (p / "postgres").is_file()
    ]
    if candidates:
        return max(candidates, key=version_key)
    initdb = shutil.which("initdb")
    if initdb:
        return Path(os.path.realpath(initdb)).parent
    raise RuntimeError(
        "PostgreSQL server binaries not found; run `bash scripts/ensure-system-deps.sh`"
    )


class _ManagedServer:
    """Shared context-manager / registry plumbing."""

    _closed: bool = False

    def close(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def start(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    @property
    def is_running(self) -> bool:  # pragma: no cover - overridden
        raise NotImplementedError

    def __enter__(self) -> Self:
        if not self.is_running:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"{type(self).__name__} is closed")


# --------------------------------------------------------------------------- Redis


class RedisServer(_ManagedServer):
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
        self._proc: subprocess.Popen[bytes] | None = None
        _register(self)
        if autostart:
            try:
                self.start()
            except BaseException:
                self.close()
                raise

    def __repr__(self) -> str:
        return f"<RedisServer {self.url} running={self.is_running}>"

    def url_for(self, db: int) -> str:
        return f"redis://{self.host}:{self.port}/{db}"

    @property
    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise RuntimeError("redis-server not started")
        return self._proc.pid

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

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

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
        self._proc = proc = _spawn(args, log_path=self.log_path, cwd=self.tmp_dir)
        deadline = time.monotonic() + self.startup_timeout
        last_error = "not tried"
        while True:
            if proc.poll() is not None:
                self._proc = None
                raise RuntimeError(
                    f"redis-server exited with code {proc.returncode} on port {self.port}:\n"
                    f"{_log_tail(self.log_path)}"
                )
            try:
                with redis.Redis(
                    host=self.host,
                    port=self.port,
                    socket_connect_timeout=0.5,
                    socket_timeout=1,
                    retry=Retry(NoBackoff(), 0),
                ) as client:
                    if client.ping():
                        return
            except redis.RedisError as exc:
                last_error = repr(exc)
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(
                    f"redis-server on port {self.port} did not answer PING within "
                    f"{self.startup_timeout}s ({last_error}):\n{_log_tail(self.log_path)}"
                )
            time.sleep(0.05)

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

    def close(self) -> None:
        """Stop and delete the temp dir. Idempotent; the object can't be restarted after."""
        try:
            self.stop()
        finally:
            self._closed = True
            shutil.rmtree(self.tmp_dir, ignore_errors=True)
            _unregister(self)


# --------------------------------------------------------------------------- PostgreSQL


# PostgreSQL's own defaults, stated: every commit is flushed to disk before it
# is acknowledged, as in production. The benchmark runs with these.
DURABLE_SETTINGS: Mapping[str, str] = {
    "fsync": "on",
    "synchronous_commit": "on",
    "full_page_writes": "on",
}
# Tests only: a crash of the cluster may lose acknowledged commits or corrupt it.
# Never used for a published figure (bench/cluster.py runs DURABLE_SETTINGS).
TEST_ONLY_FAST_SETTINGS: Mapping[str, str] = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
}


class PostgresServer(_ManagedServer):
    """A private PostgreSQL cluster on ``127.0.0.1:<port>``.

    ``durable`` must be chosen by the caller: True runs :data:`DURABLE_SETTINGS`
    (production's durability), False :data:`TEST_ONLY_FAST_SETTINGS` (speed for
    tests, no safety).

    ``initdb`` refuses to run as root, so when the test process is root the
    binaries run as the ``postgres`` system user (``setuid`` in the child, like
    ``setpriv``) and the temp dir is chowned to it. Auth is ``trust`` for
    127.0.0.1 and the unix socket (in the temp dir). ``user`` is the cluster's
    bootstrap superuser (so it may CREATE DATABASE, as Django's test runner needs).
    """

    def __init__(
        self,
        *,
        durable: bool,
        port: int | None = None,
        user: str = "test",
        dbname: str = "test",
        bindir: str | Path | None = None,
        settings: Mapping[str, str] | None = None,
        startup_timeout: float = 30.0,
        autostart: bool = True,
    ) -> None:
        self.bindir: Path = Path(bindir) if bindir is not None else find_pg_bindir()
        self.host: str = LOCALHOST
        self.port: int = port if port is not None else free_port()
        self.user: str = user
        self.dbname: str = dbname
        self.url: str = self.url_for(dbname)
        self.startup_timeout = startup_timeout
        self.durable = durable
        self.settings: dict[str, str] = {
            "listen_addresses": self.host,
            "max_connections": "300",
            **(DURABLE_SETTINGS if durable else TEST_ONLY_FAST_SETTINGS),
            "timezone": "UTC",
            **(settings or {}),
        }

        self._run_as: pwd.struct_passwd | None = None
        base_tmp: str | None = None
        if os.geteuid() == 0:
            try:
                self._run_as = pwd.getpwnam("postgres")
            except KeyError:
                raise RuntimeError(
                    "running as root but there is no `postgres` system user to run "
                    "PostgreSQL as; run `bash scripts/ensure-system-deps.sh`"
                ) from None
            if not _world_traversable(Path(tempfile.gettempdir())):
                base_tmp = "/tmp"  # the postgres user must reach it
        self.tmp_dir: Path = Path(tempfile.mkdtemp(prefix="test-pg-", dir=base_tmp))
        self.data_dir: Path = self.tmp_dir / "data"
        self.socket_dir: Path = self.tmp_dir
        self.log_path: Path = self.tmp_dir / "postgres.log"
        self.log_path.touch()
        if self._run_as is not None:
            os.chown(self.tmp_dir, self._run_as.pw_uid, self._run_as.pw_gid)
            os.chown(self.log_path, self._run_as.pw_uid, self._run_as.pw_gid)
        self._proc: subprocess.Popen[bytes] | None = None
        self._db_created = False
        _register(self)
        if autostart:
            try:
                self.start()
            except BaseException:
                self.close()
                raise

    def __repr__(self) -> str:
        return f"<PostgresServer {self.url} running={self.is_running}>"

    def url_for(self, dbname: str) -> str:
        return f"postgres://{self.user}@{self.host}:{self.port}/{dbname}"

    @property
    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise RuntimeError("postgres not started")
        return self._proc.pid

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def connect(
        self, dbname: str | None = None, *, autocommit: bool = True
    ) -> psycopg.Connection[TupleRow]:
        """A new psycopg connection (close it, or use it as a context manager)."""
        return psycopg.connect(
            host=self.host,
            port=self.port,
            user=self.user,
            dbname=dbname or self.dbname,
            autocommit=autocommit,
            connect_timeout=5,
        )

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C"
        if self._run_as is not None:
            env["HOME"] = self._run_as.pw_dir
            env["USER"] = env["LOGNAME"] = self._run_as.pw_name
        return env

    def _initdb(self) -> None:
        args = [
            str(self.bindir / "initdb"),
            "-D", str(self.data_dir),
            "-U", self.user,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
            "--no-instructions",
        ]  # fmt: skip
        proc = _spawn(
            args, log_path=self.log_path, env=self._env(), cwd=self.tmp_dir, run_as=self._run_as
        )
        try:
            code = proc.wait(timeout=120)
        finally:
            _shutdown(proc, signal.SIGKILL, 5.0)
        if code != 0:
            raise RuntimeError(f"initdb failed with code {code}:\n{_log_tail(self.log_path)}")
        (self.data_dir / "pg_hba.conf").write_text(
            "# written by tests/support/servers.py\n"
            "local all all trust\n"
            f"host all all {self.host}/32 trust\n"
        )

    def start(self) -> None:
        """initdb (first time), start the postmaster, wait for connections. No-op if running."""
        self._check_open()
        if self.is_running:
            return
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb()
        args = [
            str(self.bindir / "postgres"),
            "-D", str(self.data_dir),
            "-p", str(self.port),
            "-c", f"unix_socket_directories={self.socket_dir}",
        ]  # fmt: skip
        for key, value in self.settings.items():
            args += ["-c", f"{key}={value}"]
        self._proc = proc = _spawn(
            args, log_path=self.log_path, env=self._env(), cwd=self.tmp_dir, run_as=self._run_as
        )
        deadline = time.monotonic() + self.startup_timeout
        last_error = "not tried"
        while True:
            if proc.poll() is not None:
                self._proc = None
                raise RuntimeError(
                    f"postgres exited with code {proc.returncode} on port {self.port}:\n"
                    f"{_log_tail(self.log_path)}"
                )
            try:
                with self.connect("postgres") as conn:
                    conn.execute("SELECT 1")
                break
            except psycopg.OperationalError as exc:
                last_error = str(exc).strip()
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(
                    f"postgres on port {self.port} did not accept connections within "
                    f"{self.startup_timeout}s ({last_error}):\n{_log_tail(self.log_path)}"
                )
            time.sleep(0.05)
        if not self._db_created:
            self.create_database(self.dbname)
            self._db_created = True

    def create_database(self, name: str | None = None) -> str:
        """CREATE DATABASE (owned by ``user``; a random name if none given); returns its URL."""
        name = name or f"test_{uuid.uuid4().hex[:12]}"
        with self.connect("postgres") as conn:
            conn.execute(
                sql.SQL("CREATE DATABASE {} OWNER {}").format(
                    sql.Identifier(name), sql.Identifier(self.user)
                )
            )
        return self.url_for(name)

    def drop_database(self, name: str) -> None:
        """DROP DATABASE IF EXISTS, disconnecting any sessions first."""
        with self.connect("postgres") as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )

    def stop(self, timeout: float = 30.0) -> None:
        """Fast shutdown (SIGINT: disconnects clients), SIGKILL after ``timeout``."""
        proc, self._proc = self._proc, None
        if proc is not None:
            _shutdown(proc, signal.SIGINT, timeout)

    def close(self) -> None:
        """Stop and delete the cluster. Idempotent; the object can't be restarted after."""
        try:
            self.stop()
        finally:
            self._closed = True
            shutil.rmtree(self.tmp_dir, ignore_errors=True)
            _unregister(self)


# --------------------------------------------------------------------------- the app


class LiveServer(_ManagedServer):
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
        self._proc: subprocess.Popen[bytes] | None = None
        self._migrated = False
        _register(self)
        if autostart:
            try:
                self.start()
            except BaseException:
                self.close()
                raise

    def __repr__(self) -> str:
        return f"<LiveServer {self.url} running={self.is_running}>"

    @property
    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise RuntimeError("server not started")
        return self._proc.pid

    @property
    def uvicorn_args(self) -> tuple[str, ...]:
        """uvicorn's arguments after the app, host and port."""
        return (*(("--ws", self.ws) if self.ws else ()), *self.extra_args)

    @property
    def returncode(self) -> int | None:
        """Exit code of the last process (None while running or if never started)."""
        return None if self._proc is None else self._proc.poll()

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

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
        self._proc = proc = _spawn(args, log_path=self.log_path, env=self.env, cwd=self.cwd)
        deadline = time.monotonic() + self.startup_timeout
        last_error = "not tried"
        health_url = self.url + self.health_path
        with httpx.Client(timeout=2.0, trust_env=False) as client:
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(
                        f"uvicorn exited with code {proc.returncode} before {health_url} "
                        f"answered:\n{_log_tail(self.log_path)}"
                    )
                try:
                    response = client.get(health_url)
                    if response.status_code == 200:
                        return
                    last_error = f"HTTP {response.status_code}: {response.text[:200]}"
                except httpx.HTTPError as exc:
                    last_error = repr(exc)
                if time.monotonic() > deadline:
                    self.kill()
                    raise RuntimeError(
                        f"{health_url} did not answer 200 within {self.startup_timeout}s "
                        f"({last_error}):\n{_log_tail(self.log_path)}"
                    )
                time.sleep(0.1)

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

    def close(self) -> None:
        """Stop and delete the temp dir (with the log). Idempotent."""
        try:
            self.stop()
        finally:
            self._closed = True
            shutil.rmtree(self.tmp_dir, ignore_errors=True)
            _unregister(self)


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
