"""Optional py-spy recordings of the server processes during a measurement.

``--profile DIR`` (``bench reconnect``) runs ``py-spy record`` on each server
process for the measured phase only and writes its raw (collapsed) stacks to
``DIR/server-<pid>.txt``; ``python -m bench.pyspy DIR/server-<pid>.txt`` then
prints the share of busy samples per function. py-spy is not a dependency:
install it into the venv (``pip install py-spy``); it needs ptrace rights on
the server processes (it runs as the same user here).
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

RATE = 200  # samples per second


class Recorders:
    """py-spy on each pid from ``start()`` until ``stop()``."""

    def __init__(self, pids: Sequence[int], out_dir: Path, *, gil: bool = False) -> None:
        exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        if not Path(exe).exists():
            raise RuntimeError("--profile needs py-spy (pip install py-spy)")
        out_dir.mkdir(parents=True, exist_ok=True)
        self.paths = [out_dir / f"server-{pid}.txt" for pid in pids]
        self.procs: list[subprocess.Popen[bytes]] = []
        for pid, path in zip(pids, self.paths, strict=True):
            args = [exe, "record", "--pid", str(pid), "--rate", str(RATE), "--format", "raw"]
            args += ["--output", str(path), "--nonblocking"]
            if gil:
                # Only samples holding the GIL: Python's own work, without the
                # waits for the GIL or for a CPU that a loaded machine adds to
                # every call that releases it (a syscall, a lock).
                args.append("--gil")
            self.procs.append(subprocess.Popen(args, stdout=subprocess.DEVNULL))  # noqa: S603

    def stop(self) -> list[str]:
        """Ends the recordings (py-spy writes its file on SIGINT)."""
        for proc in self.procs:
            proc.send_signal(signal.SIGINT)
        for proc in self.procs:
            proc.wait(60)
        return [str(p) for p in self.paths]


def shares(path: Path, top: int = 40, within: str = "") -> list[tuple[float, float, str]]:
    """(inclusive %, self %, function) over the samples of ``path``'s raw stacks
    (only the stacks through the function ``within`` if given, e.g. the event
    loop's ``Runner.run``)."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        frames = [f.split(" (")[0] for f in stack.split(";")]
        if within and within not in frames:
            continue
        total += count
        for name in set(frames):
            inclusive[name] += count
        own[frames[-1]] += count
    rows = [
        (100.0 * n / total, 100.0 * own[name] / total, name)
        for name, n in inclusive.most_common(top)
    ]
    return rows


def main(argv: Sequence[str]) -> int:
    within = ""
    if argv and argv[0].startswith("--within="):
        within, argv = argv[0].partition("=")[2], argv[1:]
    for arg in argv:
        print(arg)
        for incl, self_pct, name in shares(Path(arg), 60, within):
            print(f"{incl:6.1f} {self_pct:6.1f}  {name}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
