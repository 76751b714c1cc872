"""Publisher fairness: one key floods, another publishes small; the small one's latency.

``python -m bench.fairness [--flooders 4] [--recipients 10000] [--duration 20]``

Spawns one uvicorn process (SQLite by default, ``--postgres`` for a throw-away
PostgreSQL) with two publisher keys and the default limits (or
``--server-env NAME=VALUE``). ``--flooders`` clients send publishes of
``--recipients`` recipients back to back (ignoring ``Retry-After``: a flood)
while one client sends single-recipient publishes one after another. Prints
one JSON line (also appended to bench/results/fairness.jsonl): the small
publisher's latency percentiles and the flood's answers.

tests/security/test_publish_flood.py asserts only a generous bound; this
measures (docs/security.md, "The second attack pass").
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from bench.cluster import REPO_ROOT, image_uvicorn_args, random_secret
from bench.stats import summary
from tests.support.servers import LiveServer, PostgresServer

RESULTS = REPO_ROOT / "bench" / "results" / "fairness.jsonl"


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.fairness", description=__doc__)
    p.add_argument("--flooders", type=int, default=4)
    p.add_argument("--recipients", type=int, default=10_000)
    p.add_argument("--duration", type=float, default=20.0)
    p.add_argument("--postgres", action="store_true")
    p.add_argument("--server-env", action="append", default=[], metavar="NAME=VALUE")
    return p.parse_args(argv)


async def measure(server: LiveServer, args: argparse.Namespace, keys: dict[str, str]) -> Any:
    big = json.dumps(
        {"recipients": [f"f{i}" for i in range(args.recipients)], "type": "bench.flood"}
    ).encode()
    stop = time.monotonic() + args.duration
    flood: Counter[int] = Counter()
    small: list[float] = []
    small_status: Counter[int] = Counter()

    async def send(http: httpx.AsyncClient, secret: str, body: bytes) -> int:
        headers = {"Authorization": f"Bearer {secret}", "Content-Type": "application/json"}
        url = server.url + "/api/v1/notifications"
        return (await http.post(url, content=body, headers=headers)).status_code

    async def flooder(http: httpx.AsyncClient) -> None:
        while time.monotonic() < stop:
            flood[await send(http, keys["flood"], big)] += 1

    async def small_publisher(http: httpx.AsyncClient) -> None:
        n = 0
        while time.monotonic() < stop:
            body = json.dumps({"recipients": [f"s{n}"], "type": "bench.small"}).encode()
            started = time.monotonic()
            small_status[await send(http, keys["small"], body)] += 1
            small.append(time.monotonic() - started)
            n += 1

    limits = httpx.Limits(max_connections=args.flooders + 4)
    async with httpx.AsyncClient(timeout=120.0, trust_env=False, limits=limits) as http:
        await asyncio.gather(small_publisher(http), *(flooder(http) for _ in range(args.flooders)))
    ms = [1000 * s for s in small]
    return {
        "bench": "fairness",
        "flooders": args.flooders,
        "recipients": args.recipients,
        "duration_s": args.duration,
        "database": "postgres" if args.postgres else "sqlite",
        "server_env": args.server_env,
        "flood_answers": dict(flood),
        "flood_rows_per_s": round(flood[202] * args.recipients / args.duration),
        "small_requests": len(ms),
        "small_answers": dict(small_status),
        "small_ms": summary(ms, digits=1),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    keys = {"flood": random_secret(40), "small": random_secret(40)}
    env = {
        "NOTIFY_API_KEYS": f"flood:{keys['flood']},small:{keys['small']}",
        "JWT_SECRET": random_secret(64),
        "LOG_LEVEL": "WARNING",
        # As production runs (make exports DEBUG=1 for the dev server).
        "DEBUG": "false",
        "DJANGO_SECRET_KEY": random_secret(50),
    }
    env.update(dict(item.split("=", 1) for item in args.server_env))
    postgres = PostgresServer(durable=True) if args.postgres else None
    tmp = Path(tempfile.mkdtemp(prefix="bench-fairness-"))
    if postgres is not None:
        env["DATABASE_URL"] = postgres.url_for(postgres.create_database())
    else:
        env["DATABASE_URL"] = f"sqlite:///{tmp / 'db.sqlite3'}"
    server = LiveServer(env, extra_args=image_uvicorn_args(), startup_timeout=60.0)
    try:
        line = asyncio.run(measure(server, args, keys))
    finally:
        server.close()
        if postgres is not None:
            postgres.close()
    text = json.dumps(line)
    print(text)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with RESULTS.open("a") as results:
        results.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
