"""Where the load goes: spawned processes (bench/cluster.py) or given URLs."""

from __future__ import annotations

import argparse
import os
from typing import Any

# With --url: the secrets, read from the environment when no option gives
# them (a command line is visible to every user of the machine; the
# environment of a process only to its owner).
API_KEY_ENV = "BENCH_API_KEY"
JWT_SECRET_ENV = "BENCH_JWT_SECRET"  # noqa: S105 (the variable's name)


class Target:
    """Where the load goes: spawned processes or given URLs."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.cluster: Any = None
        self.args = args
        if args.spawn and args.url:
            raise SystemExit("bench: give --url or --spawn, not both")
        if not args.spawn and not args.url:
            raise SystemExit("bench: give --url URL (a running service) or --spawn N")
        if args.spawn:
            from bench.cluster import Cluster

            self.cluster = Cluster(
                args.spawn,
                redis=not args.no_redis,
                redis_cluster=args.redis_cluster,
                postgres=args.postgres,
                server_env=dict(args.server_env),
                uvicorn_args=args.server_arg,
                light=args.light,
            )
            self.urls: list[str] = self.cluster.urls
            self.api_key: str = self.cluster.api_key
            self.jwt_secret: str = self.cluster.jwt_secret
            self.server_pids: list[int] = self.cluster.server_pids
            self.redis_pid: int | None = self.cluster.redis_pid
            self.redis_addresses: list[str] = self.cluster.redis_addresses
        else:
            api_key = args.api_key or os.environ.get(API_KEY_ENV)
            jwt_secret = args.jwt_secret or os.environ.get(JWT_SECRET_ENV)
            if not api_key or not jwt_secret:
                raise SystemExit(
                    f"bench: --url needs the publisher secret and the user-token key: "
                    f"{API_KEY_ENV} and {JWT_SECRET_ENV} in the environment "
                    "(or --api-key and --jwt-secret)"
                )
            self.urls = [u.rstrip("/") for u in args.url]
            self.api_key = api_key
            self.jwt_secret = jwt_secret
            self.server_pids = list(args.server_pid)
            self.redis_pid = None
            self.redis_addresses = list(args.redis_info)

    def describe(self) -> dict[str, Any]:
        args = self.args
        env = dict(args.server_env)
        if self.cluster is not None:
            return {
                "kind": "spawn",
                "spawn": args.spawn,
                "urls": self.urls,
                "database": self.cluster.database,
                "postgres_settings": self.cluster.postgres_settings,
                "config": self.cluster.config,
                "redis": self.cluster.redis is not None or self.cluster.redis_cluster is not None,
                "redis_topology": self.cluster.redis_topology,
                "redis_layer": (
                    "sharded pubsub"
                    if self.cluster.redis_cluster is not None
                    else env.get("NOTIFY_REDIS_LAYER", "pubsub")
                    if self.cluster.redis is not None
                    else "in-memory"
                ),
                "server_env": env,
                "uvicorn_args": list(self.cluster.servers[0].uvicorn_args),
                "server_pids": self.server_pids,
            }
        return {
            "kind": "url",
            "spawn": 0,
            "urls": self.urls,
            "database": None,
            "postgres_settings": None,
            "config": None,
            "redis": None,
            "redis_topology": None,
            "redis_layer": None,
            "server_env": {},
            "server_pids": self.server_pids,
        }

    def close(self) -> None:
        if self.cluster is not None:
            self.cluster.close()
