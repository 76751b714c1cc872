"""How busy this process was, for the push worker's throttle (throttle.py).

Busy time over a span is the CPU time of all the process's threads (the
loop, the publish writer, the database threads: through the GIL they take
turns on about one core) plus the time the calling thread, the event loop's,
was ready to run but waited for a CPU (Linux ``/proc/thread-self/schedstat``,
its second field). The second part matters on shared cores: a process given
a third of a core by the machine uses little CPU yet has no idle time, and
CPU time alone would call it idle. Where ``schedstat`` is missing (not
Linux, or no schedstats), only the CPU time counts.

A process can also be idle while the machine is not: its live requests wait
on a database or a cache that shares its cores, and any CPU the pushes took
would come out of theirs. ``pressure()`` is the share of the span during
which some task of the container (cgroup v2 ``cpu.pressure``) or else of
the machine (``/proc/pressure/cpu``) was ready to run but had no CPU: Linux
pressure stall information (PSI). None where the kernel has none.
"""

from __future__ import annotations

import contextlib
import os
import time

SCHEDSTAT = "/proc/thread-self/schedstat"
PRESSURE = ("/sys/fs/cgroup/cpu.pressure", "/proc/pressure/cpu")


class LoadStat:
    """Busy seconds since the previous call; create it on the loop's thread."""

    def __init__(self) -> None:
        self._fd: int | None = None
        with contextlib.suppress(OSError):
            # Opened here: the file is the opening thread's for as long as it is open.
            self._fd = os.open(SCHEDSTAT, os.O_RDONLY)
        self._psi: int | None = None
        for path in PRESSURE:
            with contextlib.suppress(OSError):
                self._psi = os.open(path, os.O_RDONLY)
                break
        self._cpu = time.process_time()
        self._wait = self._waited()
        self._stalled = self._stall()
        self._at = time.monotonic()

    def busy(self) -> float:
        cpu, wait = time.process_time(), self._waited()
        busy = (cpu - self._cpu) + (wait - self._wait)
        self._cpu, self._wait = cpu, wait
        return busy

    def pressure(self) -> float | None:
        """The share of the span since the previous call during which some
        task waited for a CPU (None where unknown)."""
        stalled, at = self._stall(), time.monotonic()
        span, before = at - self._at, self._stalled
        self._stalled, self._at = stalled, at
        if stalled is None or before is None or span <= 0:
            return None
        return (stalled - before) / span

    def close(self) -> None:
        for fd in (self._fd, self._psi):
            if fd is not None:
                os.close(fd)
        self._fd = self._psi = None

    def _stall(self) -> float | None:
        """Seconds some task has waited for a CPU so far (``some ... total=`` µs)."""
        if self._psi is None:
            return None
        try:
            first = os.pread(self._psi, 256, 0).split(b"\n", 1)[0]
            return int(first.rsplit(b"total=", 1)[1]) / 1e6
        except (OSError, IndexError, ValueError):
            return None

    def _waited(self) -> float:
        """Seconds this thread has waited for a CPU so far (0 where unknown)."""
        if self._fd is None:
            return 0.0
        try:
            fields = os.pread(self._fd, 128, 0).split()
            return int(fields[1]) / 1e9
        except (OSError, IndexError, ValueError):
            self.close()
            return 0.0
