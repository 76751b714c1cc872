"""The servers' side of a run: CPU, memory, Redis and /metrics read at the
loader processes' barriers, and the loader processes themselves."""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bench import procstat, redisinfo
from bench.loader import LocalHub, Worker, WorkerPlan, worker_process
from bench.target import Target

Probes = dict[str, Callable[[], float | None]]


class Coordinator:
    """Measures the servers at the workers' barriers and keeps their reports."""

    def __init__(self, target: Target, settle_s: float, probes: Probes | None = None) -> None:
        self.target = target
        # Other counters read at the same marks as the servers' CPU (bench capacity:
        # PostgreSQL's CPU and WAL position); the line gets their increase per phase.
        self.probes: Probes = probes or {}
        self._probe_mark: dict[str, float | None] = {}
        self.phase_probes: list[dict[str, float | None]] = []
        self.settle_s = settle_s
        self.rss_before: list[int | None] = []
        self.rss_after_open: list[int | None] = []
        self.redis_before: int | None = None
        self.redis_after_open: int | None = None
        self.opened: list[dict[str, Any]] = []
        self.phases: list[list[dict[str, Any]]] = []
        self.phase_server_cpu: list[list[float | None]] = []
        self.phase_server_cpu_s: list[list[float | None]] = []
        self._cpu_mark: list[float | None] = []
        self._wall_mark = 0.0
        self._metrics_mark: dict[str, float] | None = None
        self.phase_metrics: list[dict[str, float] | None] = []
        self._redis_mark: list[redisinfo.NodeSample] | None = []
        # (before, after) pairs; None where a node did not answer INFO
        self.phase_redis: list[list[redisinfo.NodeSample] | None] = []

    async def _scrape(self) -> dict[str, float] | None:
        return await asyncio.to_thread(scrape_metrics, self.target.urls)

    def _rss(self) -> list[int | None]:
        return [procstat.rss_kib(pid) for pid in self.target.server_pids]

    def _mark_cpu(self) -> None:
        self._cpu_mark = [procstat.cpu_seconds(pid) for pid in self.target.server_pids]
        self._wall_mark = time.perf_counter()
        self._redis_mark = redisinfo.try_sample_all(self.target.redis_addresses)
        self._probe_mark = {name: read() for name, read in self.probes.items()}

    def _cpu_since_mark(self) -> list[float | None]:
        wall = max(1e-9, time.perf_counter() - self._wall_mark)
        out: list[float | None] = []
        seconds: list[float | None] = []
        for pid, before in zip(self.target.server_pids, self._cpu_mark, strict=False):
            now = procstat.cpu_seconds(pid)
            used = None if now is None or before is None else now - before
            seconds.append(None if used is None else round(used, 2))
            out.append(None if used is None else round(used / wall * 100, 1))
        self.phase_server_cpu_s.append(seconds)
        return out

    async def on_warmed(self) -> None:
        await asyncio.sleep(0.2)
        self._metrics_mark = await self._scrape()
        self.rss_before = self._rss()
        if self.target.redis_pid:
            self.redis_before = procstat.rss_kib(self.target.redis_pid)

    async def on_opened(self, infos: list[dict[str, Any]]) -> None:
        self.opened = infos
        await asyncio.sleep(self.settle_s)
        self.rss_after_open = self._rss()
        if self.target.redis_pid:
            self.redis_after_open = procstat.rss_kib(self.target.redis_pid)
        self._mark_cpu()

    async def on_phase(self, index: int, results: list[dict[str, Any]]) -> None:
        self.phase_server_cpu.append(self._cpu_since_mark())
        self.phase_redis.append(self._redis_mark)
        self.phase_redis.append(redisinfo.try_sample_all(self.target.redis_addresses))
        now_probes = {name: read() for name, read in self.probes.items()}
        self.phase_probes.append(
            {
                name: None
                if value is None or self._probe_mark.get(name) is None
                else value - self._probe_mark[name]  # type: ignore[operator]
                for name, value in now_probes.items()
            }
        )
        self.phases.append(results)
        now = await self._scrape()
        self.phase_metrics.append(metrics_delta(self._metrics_mark, now))
        self._metrics_mark = now
        self._mark_cpu()


METRIC_NAMES = {
    "notify_notifications_accepted_total": "accepted",
    "notify_notifications_delivered_total": "delivered",
    "notify_notifications_dropped_total": "dropped",
    "notify_notifications_replayed_total": "replayed",
    "notify_sockets_open": "sockets_open",
}


def scrape_metrics(urls: list[str]) -> dict[str, float] | None:
    """Sum of the service's own counters over ``urls`` (GET /metrics); None if unreachable."""
    import httpx

    totals: dict[str, float] = dict.fromkeys(METRIC_NAMES.values(), 0.0)
    try:
        with httpx.Client(timeout=5.0, trust_env=False) as client:
            for url in urls:
                response = client.get(url.rstrip("/") + "/metrics")
                if response.status_code != 200:
                    return None
                for line in response.text.splitlines():
                    name, _, value = line.partition(" ")
                    key = METRIC_NAMES.get(name)
                    if key is not None:
                        totals[key] += float(value)
    except (httpx.HTTPError, ValueError):
        return None
    return totals


def metrics_delta(
    before: dict[str, float] | None, after: dict[str, float] | None
) -> dict[str, float] | None:
    """Counter increase over a phase (sockets_open: the value at its end)."""
    if before is None or after is None:
        return None
    out = {k: after[k] - before.get(k, 0.0) for k in after if k != "sockets_open"}
    out["sockets_open"] = after["sockets_open"]
    return {k: int(v) if float(v).is_integer() else v for k, v in out.items()}


def _recv(conn: Any, kind: str) -> Any:
    message = conn.recv()
    tag, payload = message
    if tag == "failed":
        raise RuntimeError(f"a loader process failed: {payload}")
    if tag != kind:
        raise RuntimeError(f"loader protocol: expected {kind!r}, got {tag!r}")
    return payload


async def run_workers(plans: list[WorkerPlan], coord: Coordinator) -> list[dict[str, Any]]:
    """Run the plans (in this process for one, else one process each); returns finals."""
    if len(plans) == 1:
        hub = LocalHub(coord.on_warmed, coord.on_opened, coord.on_phase)
        return [await Worker(plans[0], hub).run()]

    ctx = multiprocessing.get_context("spawn")
    conns: list[Any] = []
    procs: list[Any] = []
    for plan in plans:
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=worker_process, args=(plan, child), daemon=True)
        proc.start()
        child.close()
        conns.append(parent)
        procs.append(proc)
    loop = asyncio.get_running_loop()
    pool = ThreadPoolExecutor(max_workers=len(plans))

    async def gather(kind: str) -> list[Any]:
        return list(
            await asyncio.gather(*(loop.run_in_executor(pool, _recv, c, kind) for c in conns))
        )

    def release() -> None:
        for c in conns:
            c.send("go")

    try:
        await gather("warmed")
        await coord.on_warmed()
        release()
        await coord.on_opened(await gather("opened"))
        release()
        for i in range(len(plans[0].phases)):
            await coord.on_phase(i, await gather("phase"))
            release()
        finals = await gather("final")
        for proc in procs:
            proc.join(30)
        return finals
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.terminate()
                proc.join(5)
        for c in conns:
            c.close()
        pool.shutdown(wait=False, cancel_futures=True)
