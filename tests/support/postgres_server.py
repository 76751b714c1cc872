"""A private PostgreSQL cluster for tests (loopback, free port, trust auth)."""

from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import tempfile
import uuid
from collections.abc import Mapping
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.rows import TupleRow

from tests.support.processes import (
    LOCALHOST,
    ManagedServer,
    _log_tail,
    _shutdown,
    _spawn,
    _world_traversable,
    free_port,
)

__all__ = ["DURABLE_SETTINGS", "TEST_ONLY_FAST_SETTINGS", "PostgresServer", "find_pg_bindir"]


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


class PostgresServer(ManagedServer):
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
        self._db_created = False
        self._autostart(autostart)

    def url_for(self, dbname: str) -> str:
        return f"postgres://{self.user}@{self.host}:{self.port}/{dbname}"

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
        self._proc = _spawn(
            args, log_path=self.log_path, env=self._env(), cwd=self.tmp_dir, run_as=self._run_as
        )
        self._wait_ready(
            self._answers_select,
            what=f"postgres on port {self.port}",
            goal="accept connections",
            retry_on=(psycopg.OperationalError,),
        )
        if not self._db_created:
            self.create_database(self.dbname)
            self._db_created = True

    def _answers_select(self) -> None:
        with self.connect("postgres") as conn:
            conn.execute("SELECT 1")

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
