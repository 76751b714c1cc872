"""Processes for the throw-away test servers: free ports, spawning in a new
session, shutting down a whole process group, and the base class every server
shares (its process, temp dir and log, the registry that closes what a test
forgot at interpreter exit, the context manager).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Protocol, Self

LOCALHOST = "127.0.0.1"

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


def wait_until_ready(
    probe: Callable[[], str | None],
    *,
    what: str,
    goal: str,
    timeout: float,
    retry_on: tuple[type[Exception], ...] = (),
    proc: subprocess.Popen[bytes] | None = None,
    log_path: Path | None = None,
    interval: float = 0.05,
) -> None:
    """Call ``probe`` every ``interval`` s until it returns None (ready).

    A string it returns, or an exception of ``retry_on`` it raises, says why
    not yet. RuntimeError if ``proc`` exits first, or once ``timeout`` s have
    passed ("``what`` did not ``goal``" and the last reason), each with the
    tail of ``log_path``: what a failed start needs to be understood.
    """
    deadline = time.monotonic() + timeout
    while True:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode}{_tail(log_path)}")
        try:
            reason = probe()
        except retry_on as exc:
            reason = f"{type(exc).__name__}: {str(exc).strip()}"
        if reason is None:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"{what} did not {goal} within {timeout}s ({reason}){_tail(log_path)}"
            )
        time.sleep(interval)


def _tail(log_path: Path | None) -> str:
    return f":\n{_log_tail(log_path)}" if log_path is not None else ""


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


class Closing:
    """``with`` support for what has a ``close()``: it is closed on the way out."""

    def close(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class ManagedServer(Closing):
    """What every server shares: one child process, a temp dir holding its log,
    registration for the exit-time cleanup, and ``with`` support.

    A subclass sets ``url``, ``tmp_dir``, ``log_path`` and ``startup_timeout``,
    then calls :meth:`_autostart` last in its constructor, and implements
    ``start`` (spawn, then :meth:`_wait_ready`) and ``stop``.
    """

    _closed: bool = False
    _proc: subprocess.Popen[bytes] | None = None
    url: str
    tmp_dir: Path
    log_path: Path
    startup_timeout: float

    def start(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def stop(self, timeout: float = 15.0) -> object:  # pragma: no cover - overridden
        raise NotImplementedError

    def _wait_ready(
        self,
        probe: Callable[[], str | None],
        *,
        what: str,
        goal: str,
        retry_on: tuple[type[Exception], ...],
        interval: float = 0.05,
    ) -> None:
        """:func:`wait_until_ready` on the process just spawned, within
        ``startup_timeout``; a server that never gets ready is not left running."""
        try:
            wait_until_ready(
                probe,
                what=what,
                goal=goal,
                timeout=self.startup_timeout,
                retry_on=retry_on,
                proc=self._proc,
                log_path=self.log_path,
                interval=interval,
            )
        except RuntimeError:
            self._abandon_start()
            raise

    def _abandon_start(self) -> None:
        self.stop()

    def _autostart(self, autostart: bool) -> None:
        _register(self)
        if autostart:
            try:
                self.start()
            except BaseException:
                self.close()
                raise

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.url} running={self.is_running}>"

    @property
    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise RuntimeError(f"{type(self).__name__} not started")
        return self._proc.pid

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def close(self) -> None:
        """Stop and delete the temp dir (with the log). Idempotent; no restart after."""
        try:
            self.stop()
        finally:
            self._closed = True
            shutil.rmtree(self.tmp_dir, ignore_errors=True)
            _unregister(self)

    def __enter__(self) -> Self:
        if not self.is_running:
            self.start()
        return self

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"{type(self).__name__} is closed")
