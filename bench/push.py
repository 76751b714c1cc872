"""``python -m bench push``: Web Push messages per second from one service process.

One uvicorn process on PostgreSQL (``tests/support/servers.py``) sends to the
local HTTPS push service of the tests (``tests/support/push_service.py``,
private CA via ``NOTIFY_PUSH_CA_BUNDLE``), which answers 201 and fully
decrypts and VAPID-checks every ``--check-every``-th message (all of them
would make the push service, on the same cores, the bottleneck). Users each
have one subscription; publishes of ``--batch`` recipients with
``"push": "always"`` go out as fast as the service takes them. The figure is
messages answered 201 per second, from the first publish to the last 201.
Prints one JSON line.

The service runs as production does: ``DEBUG=false`` (with its own random
``DJANGO_SECRET_KEY``), whatever this process's environment says (``make``
exports ``DEBUG=1`` for ``make run``, and the server inherits the rest of
this environment). DEBUG on would measure a different service: Django keeps
every query of a request in memory, and the dev defaults apply.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from bench import procstat
from bench.cluster import REPO_ROOT  # puts the repo on sys.path
from tests.support.push_service import PushService, b64url
from tests.support.servers import LiveServer, PostgresServer, RedisServer

JWT_SECRET = secrets.token_hex(32)
PUBLISHER = secrets.token_hex(24)
SUBJECT = "mailto:bench@notify.invalid"


def parse(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench push", description=__doc__)
    p.add_argument("--users", type=int, default=1000, help="users, one subscription each")
    p.add_argument("--count", type=int, default=20000, help="push messages in all")
    p.add_argument("--batch", type=int, default=100, help="recipients per publish")
    p.add_argument("--concurrency", type=int, default=4, help="publishes in flight")
    p.add_argument("--check-every", type=int, default=20, help="decrypt and verify 1 in N")
    p.add_argument("--target", type=float, default=1000.0, help="pushes/s aimed for")
    args = p.parse_args(list(argv))
    if args.batch > args.users:  # a publish counts each recipient once
        p.error("--batch must not exceed --users")
    return args


def vapid_pair() -> tuple[str, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    private = b64url(key.private_numbers().private_value.to_bytes(32, "big"))
    public = key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    return private, b64url(public)


def token(user: str) -> str:
    now = int(time.time())
    return jwt.encode({"sub": user, "iat": now, "exp": now + 3600}, JWT_SECRET, "HS256")


async def subscribe_all(server: LiveServer, service: PushService, users: list[str]) -> None:
    async with httpx.AsyncClient(base_url=server.url, trust_env=False, timeout=60) as http:
        sem = asyncio.Semaphore(16)

        async def one(user: str) -> None:
            async with sem:
                answer = await http.post(
                    "/api/v1/me/push-subscriptions",
                    content=json.dumps(service.subscription().to_json()),
                    headers={
                        "Authorization": f"Bearer {token(user)}",
                        "Content-Type": "application/json",
                    },
                )
                answer.raise_for_status()

        await asyncio.gather(*(one(u) for u in users))


async def publish_all(server: LiveServer, users: list[str], args: argparse.Namespace) -> float:
    """Publish ``count`` recipients in batches; returns the time the first went out."""
    batches = [
        [users[(start + i) % len(users)] for i in range(min(args.batch, args.count - start))]
        for start in range(0, args.count, args.batch)
    ]
    queue: asyncio.Queue[list[str]] = asyncio.Queue()
    for batch in batches:
        queue.put_nowait(batch)
    headers = {"Authorization": f"Bearer {PUBLISHER}", "Content-Type": "application/json"}
    started = time.monotonic()
    async with httpx.AsyncClient(base_url=server.url, trust_env=False, timeout=60) as http:

        async def worker() -> None:
            while not queue.empty():
                recipients = queue.get_nowait()
                body = {"recipients": recipients, "type": "bench.push", "title": "Bench",
                        "body": "x" * 200, "push": "always"}  # fmt: skip
                answer = await http.post("/api/v1/notifications", content=json.dumps(body),
                                         headers=headers)  # fmt: skip
                answer.raise_for_status()

        await asyncio.gather(*(worker() for _ in range(args.concurrency)))
    return started


def cpu_use(pid: int, before: tuple[float | None, float], pushes: int) -> dict[str, float | None]:
    """CPU the service process and this one (publisher and push service)
    spent from the first publish to the last 201, per push. On a machine
    shared with other work the pushes/s figure depends on the load; the
    service's CPU per push does much less: 1 / ``service_ms_per_push`` is
    what one process would send on a core of its own."""
    server_now, own_now = procstat.cpu_seconds(pid), procstat.own_cpu_seconds()
    server = None if server_now is None or before[0] is None else server_now - before[0]
    per_push = None if server is None or not pushes else 1000 * server / pushes
    return {
        "service_s": None if server is None else round(server, 2),
        "service_ms_per_push": None if per_push is None else round(per_push, 3),
        "service_capacity_per_s": None if not per_push else round(1000 / per_push, 1),
        "bench_process_s": round(own_now - before[1], 2),
    }


@contextlib.contextmanager
def deployment(
    check_every: int, *, redis: bool = False, worker: bool = False
) -> Iterator[tuple[LiveServer, PushService]]:
    """The local push service and one service process on a durable
    PostgreSQL (as production runs it) that sends to it; with ``redis``, a
    Redis for the channel layer and presence; with ``worker`` (needs
    ``redis``), a ``manage.py push_worker`` process does the sending instead."""
    private, public = vapid_pair()
    service = PushService(public, subject=SUBJECT, check_every=check_every)
    postgres = PostgresServer(durable=True)
    redis_server = RedisServer() if redis else None
    server: LiveServer | None = None
    sender: subprocess.Popen[bytes] | None = None
    try:
        env = {
            "DEBUG": "false",
            "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
            "NOTIFY_API_KEYS": f"bench:{PUBLISHER}",
            "JWT_SECRET": JWT_SECRET,
            "DATABASE_URL": postgres.create_database(),
            "NOTIFY_PUBLISH_RATE": "1000000/s",
            "LOG_LEVEL": "WARNING",
            "VAPID_PRIVATE_KEY": private,
            "VAPID_SUBJECT": SUBJECT,
            "NOTIFY_PUSH_ALLOWED_HOSTS": service.host,
            "NOTIFY_PUSH_CA_BUNDLE": str(service.ca.ca_path),
            "NOTIFY_PUSH_WORKER_IN_PROCESS": "false" if worker else "true",
        }
        if redis_server is not None:
            env["REDIS_URL"] = redis_server.url
        server = LiveServer(env, extra_args=("--no-access-log",), startup_timeout=60.0)
        if worker:
            command = [sys.executable, "manage.py", "push_worker", "--metrics-port", "0"]
            sender = subprocess.Popen(command, env=server.env, cwd=REPO_ROOT)  # noqa: S603
        yield server, service
    finally:
        if sender is not None:
            sender.terminate()
            sender.wait(30)
        if server is not None:
            server.close()
        if redis_server is not None:
            redis_server.close()
        postgres.close()
        service.close()


def run(args: argparse.Namespace) -> dict[str, Any]:
    with deployment(args.check_every) as (server, service):
        users = [f"bench-{i}" for i in range(args.users)]
        asyncio.run(subscribe_all(server, service, users))
        cpu_before = procstat.cpu_seconds(server.pid), procstat.own_cpu_seconds()
        load_before = os.getloadavg()
        started = asyncio.run(publish_all(server, users, args))
        published = time.monotonic()
        service.wait_for(lambda: service.count(201) >= args.count, timeout=600)
        elapsed = max(1e-9, service.last_at() - started)
        per_s = service.count(201) / elapsed
        cpu = cpu_use(server.pid, cpu_before, service.count(201))
        return {
            "bench": "push",
            "ok": not service.errors() and service.count(201) == args.count,
            "params": vars(args),
            "pushes": {
                "delivered": service.count(201),
                "per_s": round(per_s, 1),
                "publish_s": round(published - started, 3),
                "seconds": round(elapsed, 3),
                "checked": service.checked,
                "errors": service.errors()[:5],
            },
            "cpu": cpu,
            "load_avg": {"before": load_before, "after": os.getloadavg()},
            "cores": os.cpu_count(),
            "target": {"per_s": args.target, "met": per_s >= args.target},
        }


def record(line: dict[str, Any]) -> None:
    """Print the line and append it to bench/results/results.jsonl."""
    print(json.dumps(line), flush=True)
    results = REPO_ROOT / "bench" / "results"
    results.mkdir(exist_ok=True)
    with (results / "results.jsonl").open("a") as fh:
        fh.write(json.dumps(line) + "\n")


def main(argv: Sequence[str]) -> int:
    line = run(parse(argv))
    record(line)
    return 0 if line["ok"] else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
