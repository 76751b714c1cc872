"""A real PgBouncer (Debian's ``pgbouncer``) in transaction mode in front of a
:class:`~tests.support.servers.PostgresServer`, on ``127.0.0.1:<port>``.

Every database name is passed through (``* = host=... port=...``); clients
authenticate as the PostgreSQL user with ``trust``, as the server itself
allows. PgBouncer refuses to run as root, so as root it runs as ``postgres``
(like the PostgreSQL server).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import psycopg

from tests.support.postgres_server import PostgresServer
from tests.support.processes import (
    LOCALHOST,
    Closing,
    _shutdown,
    _spawn,
    free_port,
    wait_until_ready,
)

EXECUTABLE = "/usr/sbin/pgbouncer"


class PgBouncer(Closing):
    def __init__(self, postgres: PostgresServer, *, pool_size: int = 40) -> None:
        exe = EXECUTABLE if os.path.exists(EXECUTABLE) else shutil.which("pgbouncer")
        if exe is None:
            raise RuntimeError("pgbouncer not found; run `bash scripts/ensure-system-deps.sh`")
        self.postgres = postgres
        self.port = free_port()
        self.user = postgres.user
        self.tmp_dir = Path(tempfile.mkdtemp(prefix="test-pgbouncer-", dir="/tmp"))
        self.log_path = self.tmp_dir / "pgbouncer.log"
        self.log_path.touch()
        config = self.tmp_dir / "pgbouncer.ini"
        (self.tmp_dir / "users.txt").write_text(f'"{self.user}" ""\n')
        config.write_text(
            "[databases]\n"
            f"* = host={LOCALHOST} port={postgres.port}\n"
            "[pgbouncer]\n"
            f"listen_addr = {LOCALHOST}\n"
            f"listen_port = {self.port}\n"
            f"unix_socket_dir = {self.tmp_dir}\n"
            "auth_type = trust\n"
            f"auth_file = {self.tmp_dir / 'users.txt'}\n"
            "pool_mode = transaction\n"
            f"default_pool_size = {pool_size}\n"
            "max_client_conn = 2000\n"
            # Django's test runner drops its database at the end: server
            # connections to it must not linger.
            "server_idle_timeout = 5\n"
            "ignore_startup_parameters = extra_float_digits,options\n"
            f"logfile = {self.log_path}\n"
            f"pidfile = {self.tmp_dir / 'pgbouncer.pid'}\n"
        )
        run_as = pwd.getpwnam("postgres") if os.geteuid() == 0 else None
        if run_as is not None:
            for path in (self.tmp_dir, *self.tmp_dir.iterdir()):
                os.chown(path, run_as.pw_uid, run_as.pw_gid)
        self._proc: subprocess.Popen[bytes] | None = _spawn(
            [exe, str(config)], log_path=self.tmp_dir / "stdout.log", run_as=run_as
        )
        try:
            self._wait_ready()
        except BaseException:
            self.close()
            raise

    def url_for(self, dbname: str) -> str:
        return f"postgres://{self.user}@{LOCALHOST}:{self.port}/{dbname}"

    @property
    def url(self) -> str:
        return self.url_for(self.postgres.dbname)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def _wait_ready(self) -> None:
        wait_until_ready(
            self._answers_select,
            what="pgbouncer",
            goal="answer",
            timeout=20.0,
            retry_on=(psycopg.OperationalError,),
            proc=self._proc,
            log_path=self.log_path,
            interval=0.1,
        )

    def _answers_select(self) -> None:
        with psycopg.connect(
            host=LOCALHOST,
            port=self.port,
            user=self.user,
            dbname=self.postgres.dbname,
            connect_timeout=2,
            autocommit=True,
        ) as conn:
            conn.execute("SELECT 1")

    def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            with contextlib.suppress(Exception):
                _shutdown(proc, signal.SIGTERM, 10.0)  # immediate shutdown
        shutil.rmtree(self.tmp_dir, ignore_errors=True)
