"""CPU per publish request through the ASGI application, without the writer.

    .venv/bin/python -m bench.request_cost [--tree DIR]

Calls ``service.asgi.application`` (what uvicorn calls, behind its own
protocol) with the peers load generator's publish request, whose key is
wrong: everything a publish does on the event loop before it hands the
request to the writer thread (the ASGI layers, the request id, the Host
check, the body read, the key check) and its answer (401), without
uvicorn's parsing, the socket or the database. Prints the best of 7 runs of
20,000 requests, in microseconds of process CPU per request
(docs/performance.md, "Event loop per publish, fifth round"). ``--tree DIR``
measures another checkout's code (``git worktree add --detach ../base main``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent

BODY = json.dumps(
    {"recipients": ["u1"], "type": "bench.notification", "title": "t", "body": "b"}
).encode()
SCOPE: dict[str, Any] = {
    "type": "http",
    "asgi": {"version": "3.0"},
    "http_version": "1.1",
    "method": "POST",
    "scheme": "http",
    "path": "/api/v1/notifications",
    "raw_path": b"/api/v1/notifications",
    "query_string": b"",
    "root_path": "",
    "headers": [
        (b"host", b"127.0.0.1:8000"),
        (b"content-type", b"application/json"),
        (b"authorization", b"Bearer not-the-key"),
        (b"content-length", str(len(BODY)).encode()),
    ],
    "client": ("127.0.0.1", 5000),
    "server": ("127.0.0.1", 8000),
}
MESSAGE = {"type": "http.request", "body": BODY, "more_body": False}


async def measure(requests: int, runs: int) -> float:
    from service.asgi import application

    async def receive() -> dict[str, Any]:
        return MESSAGE

    async def send(message: dict[str, Any]) -> None:
        return None

    for _ in range(requests // 10):  # warm up: caches, lazy settings
        await application(dict(SCOPE), receive, send)
    best = float("inf")
    for _ in range(runs):
        started = time.process_time()
        for _ in range(requests):
            await application(dict(SCOPE), receive, send)
        best = min(best, (time.process_time() - started) / requests * 1e6)
    return best


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--tree", type=Path, default=None, help="another checkout's code")
    args = parser.parse_args(argv)
    tree = (args.tree or REPO_ROOT).resolve()
    sys.path.insert(0, str(tree))
    for name, value in {
        "DJANGO_SETTINGS_MODULE": "service.settings",
        "DJANGO_SECRET_KEY": "bench-django-secret",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "NOTIFY_API_KEYS": "bench:bench-api-secret",
        "DEBUG": "0",
        "JWT_SECRET": "bench-jwt-secret-that-is-at-least-32-bytes",
    }.items():
        os.environ.setdefault(name, value)
    import uvloop

    best = uvloop.run(measure(args.requests, args.runs))
    print(json.dumps({"code": str(tree), "cpu_us_per_request": round(best, 2)}), flush=True)


if __name__ == "__main__":
    main()
