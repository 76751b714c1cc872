"""Resident memory and CPU time of other processes, read from /proc (Linux only)."""

from __future__ import annotations

import os
import resource

_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def rss_kib(pid: int) -> int | None:
    """VmRSS of ``pid`` in KiB, or None if the process is gone or unreadable."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def cpu_seconds(pid: int) -> float | None:
    """utime + stime of ``pid`` (its own threads, not its children), in seconds."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            text = fh.read()
    except OSError:
        return None
    # The command name (field 2) may contain spaces; fields after ')' are fixed.
    fields = text.rpartition(")")[2].split()
    try:
        return (int(fields[11]) + int(fields[12])) / _TICKS
    except (IndexError, ValueError):
        return None


def own_cpu_seconds(*, children: bool = False) -> float:
    """CPU time (user + system) of this process, plus its reaped children if asked."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    total = usage.ru_utime + usage.ru_stime
    if children:
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        total += kids.ru_utime + kids.ru_stime
    return total


def _stat_fields(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            text = fh.read()
    except OSError:
        return None
    return text.rpartition(")")[2].split()


def tree_cpu_seconds(pid: int) -> float | None:
    """CPU time of ``pid``, its reaped children and its live children, in seconds.

    For a server that forks a process per connection (PostgreSQL's postmaster):
    a backend that exited during a phase is counted through the parent's
    ``cutime + cstime``, a live one through its own ``utime + stime``.
    """
    own = _stat_fields(pid)
    if own is None:
        return None
    total = sum(int(own[i]) for i in (11, 12, 13, 14))
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = _stat_fields(int(entry))
        if fields is not None and len(fields) > 12 and fields[1] == str(pid):
            total += int(fields[11]) + int(fields[12])
    return total / _TICKS
