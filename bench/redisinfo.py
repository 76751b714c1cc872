"""What Redis itself spent on a phase, from its own ``INFO`` (not from /proc).

``INFO cpu`` gives the server's CPU time (``used_cpu_sys + used_cpu_user``,
every thread of the redis-server process, microsecond resolution), ``INFO
stats`` the bytes read from and written to clients (replication traffic
apart) and ``INFO commandstats`` the calls per command. Read before and after a phase on every
node, the differences say what the phase cost Redis: that works against a
remote Redis too (ElastiCache and Memorystore answer ``INFO``), where /proc
does not reach.

The readings' own ``INFO`` calls are left out of the command counts (which
are the sums of the per-command calls).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

# Our own readings, not the phase's work.
_OWN_COMMANDS = frozenset({"info"})


@dataclass(frozen=True)
class NodeSample:
    address: str
    role: str  # "master" or "slave", as INFO replication says
    cpu_s: float
    net_in: int  # client bytes read (total_net_input_bytes), replication apart
    net_out: int
    calls: dict[str, int]


def parse_address(text: str) -> tuple[str, int]:
    """``host:port`` (or a ``redis://host:port[/db]`` URL) -> (host, port)."""
    rest = text.split("://", 1)[-1].split("/", 1)[0]
    rest = rest.rsplit("@", 1)[-1]
    host, sep, port = rest.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"expected HOST:PORT, got {text!r}")
    return host, int(port)


def _info(client: redis.Redis, section: str) -> dict[str, Any]:
    return cast(dict[str, Any], client.info(section))


def sample(address: str, *, timeout: float = 5.0) -> NodeSample:
    """One node's counters now."""
    host, port = parse_address(address)
    client = redis.Redis(
        host=host,
        port=port,
        socket_connect_timeout=timeout,
        socket_timeout=timeout,
        retry=Retry(NoBackoff(), 1),
    )
    try:
        cpu = _info(client, "cpu")
        stats = _info(client, "stats")
        commandstats = _info(client, "commandstats")
        replication = _info(client, "replication")
    finally:
        client.close()
    calls: dict[str, int] = {}
    for key, value in commandstats.items():
        name = str(key).removeprefix("cmdstat_").lower()
        if isinstance(value, dict) and name not in _OWN_COMMANDS:
            calls[name] = int(value.get("calls", 0))
    return NodeSample(
        address=f"{host}:{port}",
        role=str(replication.get("role", "master")),
        cpu_s=float(cpu["used_cpu_sys"]) + float(cpu["used_cpu_user"]),
        net_in=int(stats.get("total_net_input_bytes", 0)),
        net_out=int(stats.get("total_net_output_bytes", 0)),
        calls=calls,
    )


def sample_all(addresses: list[str]) -> list[NodeSample]:
    return [sample(a) for a in addresses]


def try_sample_all(addresses: list[str]) -> list[NodeSample] | None:
    """As :func:`sample_all` during a load run: a node that does not answer
    (failover, ``INFO`` disabled) loses the phase's figures, not the run."""
    try:
        return sample_all(addresses)
    except (redis.RedisError, OSError):
        return None


def delta(before: list[NodeSample], after: list[NodeSample], delivered: int) -> dict[str, Any]:
    """Per node and in total: CPU seconds, commands, and both per delivery.

    ``cpu_s_per_1000_deliveries`` is also the cores Redis needs per 1,000
    deliveries/s.
    """
    nodes: list[dict[str, Any]] = []
    for b, a in zip(before, after, strict=True):
        calls = {
            name: n - b.calls.get(name, 0)
            for name, n in a.calls.items()
            if n - b.calls.get(name, 0) > 0
        }
        nodes.append(
            {
                "address": a.address,
                "role": "replica" if a.role == "slave" else a.role,
                "cpu_s": round(a.cpu_s - b.cpu_s, 4),
                "commands": sum(calls.values()),
                # Includes our own INFO exchanges (a few KiB per sample).
                "net_in_bytes": a.net_in - b.net_in,
                "net_out_bytes": a.net_out - b.net_out,
                "calls": dict(sorted(calls.items(), key=lambda kv: -kv[1])),
            }
        )
    return {"nodes": nodes, **totals(nodes, delivered)}


def totals(nodes: list[dict[str, Any]], delivered: int) -> dict[str, Any]:
    def per_1000(seconds: float) -> float | None:
        return round(seconds / delivered * 1000, 4) if delivered else None

    masters = [n for n in nodes if n["role"] == "master"]

    def per_delivery(key: str) -> float | None:
        return round(sum(n[key] for n in masters) / delivered, 1) if delivered else None

    replicas = [n for n in nodes if n["role"] != "master"]
    cpu = sum(n["cpu_s"] for n in nodes)
    commands = sum(n["commands"] for n in nodes)
    calls: dict[str, int] = {}
    for n in masters:
        for name, k in n["calls"].items():
            calls[name] = calls.get(name, 0) + k
    return {
        "masters": len(masters),
        "replicas": len(replicas),
        "cpu_s": round(cpu, 4),
        "cpu_s_per_1000_deliveries": per_1000(cpu),
        "masters_cpu_s_per_1000_deliveries": per_1000(sum(n["cpu_s"] for n in masters)),
        "replicas_cpu_s_per_1000_deliveries": per_1000(sum(n["cpu_s"] for n in replicas)),
        "busiest_master_cpu_s_per_1000_deliveries": per_1000(
            max((n["cpu_s"] for n in masters), default=0.0)
        ),
        "commands": commands,
        "master_net_in_bytes_per_delivery": per_delivery("net_in_bytes"),
        "master_net_out_bytes_per_delivery": per_delivery("net_out_bytes"),
        "master_commands_per_delivery": (
            round(sum(n["commands"] for n in masters) / delivered, 3) if delivered else None
        ),
        "master_calls_per_delivery": (
            {k: round(v / delivered, 3) for k, v in sorted(calls.items(), key=lambda kv: -kv[1])}
            if delivered
            else None
        ),
    }
