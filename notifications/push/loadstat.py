"""How busy this process was, for the push worker's throttle (throttle.py).

Busy time over a span is the CPU time of all the process's threads (the
loop, the publish writer, the database threads: through the GIL they take
turns on about one core) plus the time the calling thread, the event loop's,
was ready to run but waited for a CPU (Linux ``/proc/thread-self/schedstat``,
its second field). The second part matters on shared cores: a process given
a third of a core by the machine uses little CPU yet has no idle time, and
CPU time alone would call it idle. Where ``schedstat`` is missing (not
Linux, or no schedstats), only the CPU time counts.
"""

from __future__ import annotations

import contextlib
import os
import time

SCHEDSTAT = "/proc/thread-self/schedstat"


class LoadStat:
    """Busy seconds since the previous call; create it on the loop's thread."""

    def __init__(self) -> None:
        self._fd: int | None = None
        with contextlib.suppress(OSError):
            # Opened here: the file is the opening thread's for as long as it is open.
            self._fd = os.open(SCHEDSTAT, os.O_RDONLY)
        self._cpu = time.process_time()
        self._wait = self._waited()

    def busy(self) -> float:
        cpu, wait = time.process_time(), self._waited()
        busy = (cpu - self._cpu) + (wait - self._wait)
        self._cpu, self._wait = cpu, wait
        return busy

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

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
