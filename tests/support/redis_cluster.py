"""A real Redis Cluster for tests: 3 masters and 3 replicas on loopback.

Six ``redis-server --cluster-enabled yes`` processes (each a
:class:`~tests.support.servers.RedisServer`), joined by ``redis-cli --cluster
create ... --cluster-replicas 1``. :meth:`RedisCluster.kill_master` crashes a
master (its replica is promoted); :meth:`RedisCluster.migrate_slot` moves one
slot and its keys to another master the way ``redis-cli --cluster reshard``
does (``CLUSTER SETSLOT IMPORTING/MIGRATING``, ``MIGRATE``, ``SETSLOT NODE``).
"""

from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import dataclass

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.support.processes import Closing, wait_until_ready
from tests.support.servers import LOCALHOST, RedisServer, free_port

# The Redis topologies the multi-process suites run on (see redis_env).
REDIS_TOPOLOGIES = ("redis", "redis-cluster")

# Short enough for a failover within seconds, long enough for a loaded machine
# not to take a slow node for a dead one.
NODE_TIMEOUT_MS = 3000


def _node_args() -> tuple[str, ...]:
    return (
        "--cluster-enabled", "yes",
        "--cluster-config-file", "nodes.conf",
        "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
        # The bus on a free port of its own (the default, port + 10000, may be
        # taken or out of range).
        "--cluster-port", str(free_port()),
        # Replicas sync at once (a replica that never synced cannot take over).
        "--repl-diskless-sync-delay", "0",
    )  # fmt: skip


@dataclass(frozen=True)
class Node:
    server: RedisServer
    node_id: str

    @property
    def address(self) -> str:
        return f"{LOCALHOST}:{self.server.port}"


class RedisCluster(Closing):
    """``url`` is any one node (what ``REDIS_CLUSTER_URL`` names)."""

    def __init__(self, *, masters: int = 3, replicas_per_master: int = 1) -> None:
        self.servers: list[RedisServer] = []
        try:
            for _ in range(masters * (1 + replicas_per_master)):
                self.servers.append(RedisServer(extra_args=_node_args()))
            self._create(replicas_per_master)
            self.wait_healthy(expected_masters=masters)
        except BaseException:
            self.close()
            raise
        self.url = self.servers[0].url_for(0).rsplit("/", 1)[0]

    def _create(self, replicas: int) -> None:
        cli = shutil.which("redis-cli")
        if cli is None:
            raise RuntimeError("redis-cli not found; run `bash scripts/ensure-system-deps.sh`")
        addresses = [f"{LOCALHOST}:{s.port}" for s in self.servers]
        result = subprocess.run(
            [
                cli,
                "--cluster",
                "create",
                *addresses,
                "--cluster-replicas",
                str(replicas),
                "--cluster-yes",
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"redis-cli --cluster create failed:\n{result.stdout}\n{result.stderr}"
            )

    def close(self) -> None:
        for server in self.servers:
            server.close()

    # ------------------------------------------------------------------ inspection

    @staticmethod
    def client_of(server: RedisServer) -> redis.Redis:
        return redis.Redis(
            host=server.host,
            port=server.port,
            socket_connect_timeout=2,
            socket_timeout=10,
            retry=Retry(NoBackoff(), 0),
            decode_responses=True,
        )

    def running(self) -> list[RedisServer]:
        return [s for s in self.servers if s.is_running]

    def slot_table(self) -> list[tuple[int, int, Node]]:
        """(first slot, last slot, master) as a running node sees it (CLUSTER SLOTS)."""
        by_port = {s.port: s for s in self.servers}
        with self.client_of(self.running()[0]) as client:
            entries = client.execute_command("CLUSTER", "SLOTS")
        return [(int(e[0]), int(e[1]), Node(by_port[int(e[2][1])], str(e[2][2]))) for e in entries]

    def masters(self) -> list[Node]:
        return list({node.node_id: node for _a, _b, node in self.slot_table()}.values())

    def owner_of(self, slot: int) -> Node:
        for first, last, node in self.slot_table():
            if first <= slot <= last:
                return node
        raise AssertionError(f"no master owns slot {slot}")

    def wait_healthy(self, *, expected_masters: int = 3, timeout: float = 60.0) -> None:
        """Every running node says cluster_state:ok and sees ``expected_masters``
        masters, and every running replica is in sync with its master."""
        wait_until_ready(
            lambda: self._unhealthy(expected_masters),
            what="the cluster",
            goal="become healthy",
            timeout=timeout,
            retry_on=(redis.RedisError,),
            interval=0.2,
        )

    def _unhealthy(self, expected_masters: int) -> str | None:
        """What a running node says that is not healthy yet; None if none does."""
        running = self.running()
        if not running:
            return "no node is running"
        for server in running:
            with self.client_of(server) as client:
                info = client.cluster("INFO")
                replication = client.info("replication")
            healthy = (
                info["cluster_state"] == "ok"
                and int(info["cluster_slots_ok"]) == 16384
                and int(info["cluster_size"]) == expected_masters
                and replication.get("master_link_status", "up") == "up"
            )
            if not healthy:
                return f"port {server.port}: {info} {replication}"
        return None

    # ------------------------------------------------------------------ faults

    def kill_master_of(self, slot: int) -> Node:
        """SIGKILL the master owning ``slot``; returns it. Its replica takes over
        (see :meth:`wait_failover`)."""
        node = self.owner_of(slot)
        node.server.kill()
        return node

    def wait_failover(self, slot: int, dead: Node, timeout: float = 60.0) -> Node:
        """Wait until another master owns ``slot`` and the cluster is ok again."""
        started = time.monotonic()
        wait_until_ready(
            lambda: f"{dead.address} still owns it" if self.owner_of(slot) == dead else None,
            what=f"slot {slot}",
            goal="move to a replica",
            timeout=timeout,
            interval=0.2,
        )
        self.wait_healthy(timeout=max(1.0, timeout - (time.monotonic() - started)))
        return self.owner_of(slot)

    def migrate_slot(self, slot: int, target: Node) -> None:
        """Move ``slot`` and its keys to ``target``, as ``redis-cli --cluster reshard`` does."""
        source = self.owner_of(slot)
        if source.node_id == target.node_id:
            return
        with self.client_of(source.server) as src, self.client_of(target.server) as dst:
            dst.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", source.node_id)
            src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", target.node_id)
            while keys := src.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 100):
                src.execute_command(
                    "MIGRATE", LOCALHOST, target.server.port, "", 0, 5000, "KEYS", *keys
                )
            dst.execute_command("CLUSTER", "SETSLOT", slot, "NODE", target.node_id)
            src.execute_command("CLUSTER", "SETSLOT", slot, "NODE", target.node_id)
        for node in self.masters():
            if node.node_id not in (source.node_id, target.node_id):
                with self.client_of(node.server) as client:
                    client.execute_command("CLUSTER", "SETSLOT", slot, "NODE", target.node_id)


def redis_env(request: pytest.FixtureRequest, topology: str) -> dict[str, str]:
    """The service's Redis variables for ``topology`` (one of REDIS_TOPOLOGIES),
    on the session's server or cluster."""
    if topology == "redis-cluster":
        cluster: RedisCluster = request.getfixturevalue("redis_cluster")
        return {"REDIS_CLUSTER_URL": cluster.url}
    server: RedisServer = request.getfixturevalue("redis_server")
    return {"REDIS_URL": server.url}
