"""``make run``'s server: uvicorn with the image's settings, for a person at a terminal.

It migrates the database, prints the devinfo banner, then serves. Two
things differ from ``uvicorn ...`` on the command line, both about what a
person sees: a port already in use is one line that says what to do (uvicorn
logs an error line and exits 1, which make reports as its own error), and
Ctrl-C ends quietly with status 0 (uvicorn re-raises the signal once it has
shut down, which make reports as "Interrupt" or "Terminated").

Usage: python -m service.devserver [--host 127.0.0.1] [--port 8000]
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import socket
import subprocess
import sys
from pathlib import Path

import uvicorn

APP = "service.asgi:application"
# The image's socket settings (Dockerfile CMD): less memory per idle socket.
WS_PROTOCOL = "service.ws_protocol:LeanWebSocketProtocol"
WS_MAX_SIZE = 65536


def port_in_use(host: str, port: int) -> bool:
    """Whether binding ``host:port`` fails as uvicorn's bind would (same options)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return True
            raise
    return False


def taken_message(host: str, port: int) -> str:
    return (
        f"make run: port {port} on {host} is already in use (another `make run`?). "
        f"Stop that server, or pick another port: make run PORT={port + 1}"
    )


def manage(*args: str) -> None:
    """``manage.py ARGS`` in its own process (Django set up there, not in the server's)."""
    script = Path(__file__).resolve().parent.parent / "manage.py"
    subprocess.run([sys.executable, str(script), *args], check=True)  # noqa: S603 (fixed args)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m service.devserver")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    if port_in_use(args.host, args.port):
        print(taken_message(args.host, args.port), file=sys.stderr)
        return 1
    # After the port check, so a taken port prints no banner for a server that never starts.
    manage("migrate", "--noinput", "--verbosity", "0")
    manage("devinfo", "--host", args.host, "--port", str(args.port))
    # uvicorn shuts down cleanly on Ctrl-C, then re-raises it: nothing left to say.
    with contextlib.suppress(KeyboardInterrupt):
        uvicorn.run(APP, host=args.host, port=args.port, ws=WS_PROTOCOL, ws_max_size=WS_MAX_SIZE)
    return 0


if __name__ == "__main__":
    sys.exit(main())
