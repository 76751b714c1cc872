"""The load generator: one asyncio (uvloop) process per ``--workers``.

A worker owns a contiguous block of the run's users. It opens one socket per
user (ramped), waits for each ``ready`` frame, then runs the phases of the
plan (one for ``run``, one per rate for ``sweep``), publishing only to its own
users so that it can account for every delivery without talking to the other
workers. Between steps it meets the coordinator (``Hub``), which measures the
servers while all workers wait.

Accounting, per phase. Notification ``n`` of worker ``w`` carries
``data = {"bench_ts": time.time_ns() at send, "bench_seq": n, "bench_run": run_id,
"bench_w": w}``. Its recipients are a pure function of ``n``; only a 202
makes them *expected*. A socket that receives ``n`` once counts a delivery
(latency = receipt time - ``bench_ts``), again a duplicate; at the end an
expected (socket, n) never received is lost, a received one never expected
(e.g. its POST timed out but was stored) is unexpected.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import resource
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

import jwt
import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.protocol import State

from bench import sse
from bench.procstat import own_cpu_seconds

PUBLISH_PATH = "/api/v1/notifications"
WS_PATH = "/ws/notifications"


# --------------------------------------------------------------------------- plan


@dataclass
class Phase:
    """One measured step: ``max`` (count POSTs, concurrency in flight), ``rate``
    (open loop: count POSTs spread evenly at rate per second) or ``idle``
    (no publishing: hold the sockets for ``hold_s``)."""

    mode: str
    count: int = 0
    concurrency: int = 1
    rate: float = 0.0
    hold_s: float = 0.0
    start_offset_s: float = 0.0  # rate mode: stagger workers' schedules


@dataclass
class WorkerPlan:
    index: int
    workers: int
    run_id: str
    urls: list[str]
    users: list[int]  # global user indices owned by this worker
    api_key: str
    jwt_secret: str
    scenario: str
    batch: int
    phases: list[Phase]
    ramp_per_s: float
    connect_concurrency: int = 200
    open_timeout: float = 30.0
    ready_timeout: float = 60.0
    drain_timeout: float = 10.0
    http_timeout: float = 30.0
    http_client: str = "aiohttp"
    payload_bytes: int = 0
    token_ttl_s: int = 3600
    jwt_audience: str | None = None
    jwt_issuer: str | None = None
    compression: str | None = None
    warmup: bool = True
    transport: str = "ws"  # or "sse": GET /api/v1/me/stream


def user_id(run_id: str, index: int) -> str:
    return f"bench-{run_id}-{index}"


def ws_url(http_url: str) -> str:
    parts = urlsplit(http_url)
    scheme = "wss" if parts.scheme == "https" else "ws"
    base = parts.path.rstrip("/")
    return urlunsplit((scheme, parts.netloc, base + WS_PATH, "", ""))


def publish_url(http_url: str) -> str:
    return http_url.rstrip("/") + PUBLISH_PATH


def mint_token(plan: WorkerPlan, sub: str) -> str:
    now = int(time.time())
    claims: dict[str, Any] = {"sub": sub, "iat": now, "exp": now + plan.token_ttl_s}
    if plan.jwt_audience:
        claims["aud"] = plan.jwt_audience
    if plan.jwt_issuer:
        claims["iss"] = plan.jwt_issuer
    return jwt.encode(claims, plan.jwt_secret, algorithm="HS256")


# --------------------------------------------------------------------------- coordinator


class Hub(Protocol):
    """Where a worker reports and waits for the others (and the measurements)."""

    async def warmed(self) -> None: ...

    async def opened(self, info: dict[str, Any]) -> None: ...

    async def phase_done(self, index: int, result: dict[str, Any]) -> None: ...


# --------------------------------------------------------------------------- HTTP


class Publisher(Protocol):
    async def post(self, url: str, body: bytes) -> tuple[int, bytes]: ...

    async def close(self) -> None: ...


class AiohttpPublisher:
    def __init__(self, api_key: str, pool: int, timeout: float) -> None:
        import aiohttp

        self._aiohttp = aiohttp
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=pool, limit_per_host=0, ttl_dns_cache=3600),
            timeout=aiohttp.ClientTimeout(total=timeout),
            headers={"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"},
            trust_env=False,
            skip_auto_headers=("User-Agent",),
        )

    async def post(self, url: str, body: bytes) -> tuple[int, bytes]:
        async with self._session.post(url, data=body) as response:
            return response.status, await response.read()

    async def close(self) -> None:
        await self._session.close()


class HttpxPublisher:
    def __init__(self, api_key: str, pool: int, timeout: float) -> None:
        import httpx

        self._client = httpx.AsyncClient(
            limits=httpx.Limits(max_connections=pool, max_keepalive_connections=pool),
            timeout=timeout,
            headers={"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"},
            trust_env=False,
        )

    async def post(self, url: str, body: bytes) -> tuple[int, bytes]:
        response = await self._client.post(url, content=body)
        return response.status_code, response.content

    async def close(self) -> None:
        await self._client.aclose()


def make_publisher(kind: str, api_key: str, pool: int, timeout: float) -> Publisher:
    if kind == "httpx":
        return HttpxPublisher(api_key, pool, timeout)
    if kind == "aiohttp":
        return AiohttpPublisher(api_key, pool, timeout)
    raise ValueError(f"unknown --http-client {kind!r}")


# --------------------------------------------------------------------------- state


@dataclass
class Sock:
    index: int  # position among this worker's *connected* sockets
    user: str
    ws: ClientConnection | sse.SseConnection
    url: str
    received: set[int] = field(default_factory=set)


@dataclass
class PhaseState:
    spec: Phase
    seq_lo: int
    seq_hi: int = 1 << 62
    accepted: list[int] = field(default_factory=list)
    statuses: dict[str, int] = field(default_factory=dict)
    error_samples: dict[str, str] = field(default_factory=dict)
    publish_ms: list[float] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)
    received: int = 0  # first receipts (any seq of this phase)
    duplicates: int = 0
    expected: int = 0
    posts_sent: int = 0
    t_start: float = 0.0  # wall clock (time.time) when publishing began
    t_publish_end: float = 0.0
    t_last_rx: float = 0.0
    max_lag_ms: float = 0.0
    max_lag_at_s: float = 0.0
    late_sends: int = 0
    cpu_start: float = 0.0
    foreign_start: int = 0
    closed_start: dict[str, int] = field(default_factory=dict)


class Worker:
    def __init__(self, plan: WorkerPlan, hub: Hub) -> None:
        self.plan = plan
        self.hub = hub
        self.socks: list[Sock] = []
        self.phases: list[PhaseState] = []
        self.seq = 0
        self.foreign = 0  # notification frames not from this run/worker
        self.closed_early: dict[str, int] = {}
        self.readers: list[asyncio.Task[None]] = []
        self._sse_session: Any = None

    # -- sockets ---------------------------------------------------------

    async def _connect(self, url: str, user: str) -> ClientConnection | sse.SseConnection:
        token = mint_token(self.plan, user)
        if self.plan.transport == "sse":
            if self._sse_session is None:
                self._sse_session = sse.session(self.plan.open_timeout)
            return await sse.SseConnection.open(
                self._sse_session, url, token, self.plan.open_timeout
            )
        return await connect(
            ws_url(url),
            additional_headers={"Authorization": f"Bearer {token}"},
            compression=self.plan.compression,
            proxy=None,
            open_timeout=self.plan.open_timeout,
            ping_interval=None,
            close_timeout=2,
            max_size=2**22,
            max_queue=None,  # never stop reading from the server
            user_agent_header=None,
        )

    async def _wait_ready(self, ws: ClientConnection | sse.SseConnection) -> None:
        async with asyncio.timeout(self.plan.ready_timeout):
            while True:
                frame = orjson.loads(await ws.recv())
                if isinstance(frame, dict) and frame.get("type") == "ready":
                    return

    async def open_sockets(self) -> dict[str, Any]:
        plan = self.plan
        started = time.perf_counter()
        failures: dict[str, int] = {}
        failure_samples: dict[str, str] = {}
        gate = asyncio.Semaphore(plan.connect_concurrency)
        opened: list[tuple[int, str, ClientConnection | sse.SseConnection, str]] = []
        handshake_ms: list[float] = []
        loop = asyncio.get_running_loop()
        t0 = loop.time()

        async def one(k: int, global_index: int) -> None:
            user = user_id(plan.run_id, global_index)
            url = plan.urls[global_index % len(plan.urls)]
            async with gate:
                begin = time.perf_counter()
                try:
                    ws = await self._connect(url, user)
                except Exception as exc:
                    key = _error_key(exc)
                    failures[key] = failures.get(key, 0) + 1
                    failure_samples.setdefault(key, repr(exc)[:300])
                    return
                try:
                    await self._wait_ready(ws)
                except Exception as exc:
                    key = "no_ready:" + _error_key(exc)
                    failures[key] = failures.get(key, 0) + 1
                    failure_samples.setdefault(key, repr(exc)[:300])
                    with contextlib.suppress(Exception):
                        await ws.close()
                    return
                handshake_ms.append((time.perf_counter() - begin) * 1000)
                opened.append((k, user, ws, url))

        tasks = []
        for k, global_index in enumerate(plan.users):
            if plan.ramp_per_s > 0:
                delay = t0 + k / plan.ramp_per_s - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
            tasks.append(asyncio.ensure_future(one(k, global_index)))
        await asyncio.gather(*tasks)
        opened.sort(key=lambda item: item[0])  # keep the users' order
        for position, (_, user, ws, url) in enumerate(opened):
            sock = Sock(index=position, user=user, ws=ws, url=url)
            self.socks.append(sock)
            self.readers.append(asyncio.ensure_future(self._read_forever(sock)))
        return {
            "requested": len(plan.users),
            "opened": len(self.socks),
            "failed": sum(failures.values()),
            "failures": failures,
            "failure_samples": failure_samples,
            "open_s": time.perf_counter() - started,
            "handshake_ms": handshake_ms,
        }

    async def _read_forever(self, sock: Sock) -> None:
        run_id = self.plan.run_id
        me = self.plan.index
        try:
            async for message in sock.ws:
                now = time.time_ns()
                frame = orjson.loads(message)
                if frame.get("type") != "notification":
                    continue
                data = frame.get("notification", {}).get("data") or {}
                seq = data.get("bench_seq")
                if data.get("bench_run") != run_id or data.get("bench_w") != me or seq is None:
                    self.foreign += 1
                    continue
                phase = self._phase_of(seq)
                if phase is None:
                    self.foreign += 1
                    continue
                if seq in sock.received:
                    phase.duplicates += 1
                    continue
                sock.received.add(seq)
                phase.received += 1
                phase.latencies_ms.append((now - data["bench_ts"]) / 1e6)
                phase.t_last_rx = now / 1e9
        except ConnectionClosed as exc:
            code = exc.rcvd.code if exc.rcvd is not None else 1006
            key = str(code)
            self.closed_early[key] = self.closed_early.get(key, 0) + 1
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bad frame must not kill the accounting silently
            key = "reader:" + _error_key(exc)
            self.closed_early[key] = self.closed_early.get(key, 0) + 1

    def _phase_of(self, seq: int) -> PhaseState | None:
        for phase in reversed(self.phases):
            if phase.seq_lo <= seq < phase.seq_hi:
                return phase
        return None

    # -- publishing ------------------------------------------------------

    def recipients(self, n: int) -> list[Sock]:
        """Round-robin over this worker's connected sockets (unicast: 1, batch: B)."""
        socks = self.socks
        if self.plan.scenario == "batch":
            size = min(self.plan.batch, len(socks))
            start = (n * size) % len(socks)
            return [socks[(start + j) % len(socks)] for j in range(size)]
        return [socks[n % len(socks)]]

    def _body(self, n: int, recipients: list[Sock]) -> bytes:
        data: dict[str, Any] = {
            "bench_ts": time.time_ns(),
            "bench_seq": n,
            "bench_run": self.plan.run_id,
            "bench_w": self.plan.index,
        }
        if self.plan.payload_bytes:
            data["pad"] = "x" * self.plan.payload_bytes
        return orjson.dumps(
            {
                "recipients": [s.user for s in recipients],
                "type": f"bench.{self.plan.scenario}",
                "title": "bench",
                "data": data,
            }
        )

    async def _post(self, publisher: Publisher, phase: PhaseState, n: int) -> None:
        recipients = self.recipients(n)
        url = publish_url(self.plan.urls[(n + self.plan.index) % len(self.plan.urls)])
        body = self._body(n, recipients)
        begin = time.perf_counter()
        phase.posts_sent += 1
        try:
            status, content = await publisher.post(url, body)
            key = str(status)
        except Exception as exc:
            key = "error:" + _error_key(exc)
            content = repr(exc).encode()
        phase.publish_ms.append((time.perf_counter() - begin) * 1000)
        phase.statuses[key] = phase.statuses.get(key, 0) + 1
        if key == "202":
            phase.accepted.append(n)
            phase.expected += len(recipients)
        elif key not in phase.error_samples:
            phase.error_samples[key] = content[:300].decode(errors="replace")

    async def _publish_max(self, publisher: Publisher, phase: PhaseState) -> None:
        spec = phase.spec
        counter = itertools.count(phase.seq_lo)
        end = phase.seq_lo + spec.count

        async def lane() -> None:
            while (n := next(counter)) < end:
                await self._post(publisher, phase, n)

        await asyncio.gather(*(lane() for _ in range(max(1, spec.concurrency))))

    async def _publish_rate(self, publisher: Publisher, phase: PhaseState) -> None:
        spec = phase.spec
        loop = asyncio.get_running_loop()
        interval = 1.0 / spec.rate
        t0 = loop.time() + spec.start_offset_s
        tasks: set[asyncio.Task[None]] = set()
        for k in range(spec.count):
            due = t0 + k * interval
            delay = due - loop.time()
            if delay > 0.0005:
                await asyncio.sleep(delay)
            else:
                lag_ms = -delay * 1000
                if lag_ms > phase.max_lag_ms:
                    phase.max_lag_ms = lag_ms
                    phase.max_lag_at_s = due - t0
                if lag_ms > 10:
                    phase.late_sends += 1
                if k % 16 == 0:
                    await asyncio.sleep(0)  # catching up: still let responses in
            task = asyncio.ensure_future(self._post(publisher, phase, phase.seq_lo + k))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.gather(*tasks)

    async def _drain(self, phase: PhaseState) -> float:
        """Wait until every expected delivery arrived, or the drain timeout."""
        begin = time.perf_counter()
        deadline = begin + self.plan.drain_timeout
        while time.perf_counter() < deadline:
            if phase.received >= phase.expected and self._lost(phase) == 0:
                break
            if not any(s.ws.state is State.OPEN for s in self.socks):
                break  # every socket is gone: nothing more can arrive
            await asyncio.sleep(0.02)
        return time.perf_counter() - begin

    def _lost(self, phase: PhaseState) -> int:
        lost = 0
        for n in phase.accepted:
            for sock in self.recipients(n):
                if n not in sock.received:
                    lost += 1
        return lost

    def _lost_by_url(self, phase: PhaseState) -> dict[str, int]:
        """Lost deliveries by the server the receiving socket is connected to."""
        by_url: dict[str, int] = {}
        for n in phase.accepted:
            for sock in self.recipients(n):
                if n not in sock.received:
                    by_url[sock.url] = by_url.get(sock.url, 0) + 1
        return by_url

    async def run_phase(self, publisher: Publisher, spec: Phase) -> dict[str, Any]:
        phase = PhaseState(spec=spec, seq_lo=self.seq)
        if spec.mode != "idle":
            self.seq += spec.count
            phase.seq_hi = self.seq
        else:
            phase.seq_hi = self.seq
        self.phases.append(phase)
        phase.foreign_start = self.foreign
        phase.closed_start = dict(self.closed_early)
        phase.cpu_start = own_cpu_seconds()
        phase.t_start = time.time()
        drain_s = 0.0
        if spec.mode == "idle":
            await asyncio.sleep(spec.hold_s)
            phase.t_publish_end = time.time()
        else:
            if not self.socks:
                phase.t_publish_end = time.time()
            elif spec.mode == "max":
                await self._publish_max(publisher, phase)
            elif spec.mode == "rate":
                await self._publish_rate(publisher, phase)
            else:
                raise ValueError(f"unknown phase mode {spec.mode!r}")
            phase.t_publish_end = time.time()
            drain_s = await self._drain(phase)
        t_end = time.time()
        lost = self._lost(phase)
        delivered_ok = phase.expected - lost
        return {
            "worker": self.plan.index,
            "posts_sent": phase.posts_sent,
            "posts_accepted": len(phase.accepted),
            "statuses": phase.statuses,
            "error_samples": phase.error_samples,
            "expected": phase.expected,
            "received": phase.received,
            "delivered": delivered_ok,
            "lost": lost,
            "lost_by_url": self._lost_by_url(phase) if lost else {},
            "duplicates": phase.duplicates,
            "unexpected": phase.received - delivered_ok,
            "latencies_ms": phase.latencies_ms,
            "publish_ms": phase.publish_ms,
            "t_start": phase.t_start,
            "t_publish_end": phase.t_publish_end,
            "t_last_rx": phase.t_last_rx,
            "t_end": t_end,
            "drain_s": drain_s,
            "max_lag_ms": phase.max_lag_ms,
            "max_lag_at_s": phase.max_lag_at_s,
            "late_sends": phase.late_sends,
            "cpu_s": own_cpu_seconds() - phase.cpu_start,
            "sockets_open": sum(1 for s in self.socks if s.ws.state is State.OPEN),
            "foreign": self.foreign - phase.foreign_start,
            "closed_early": {
                k: v - phase.closed_start.get(k, 0)
                for k, v in self.closed_early.items()
                if v > phase.closed_start.get(k, 0)
            },
        }

    # -- whole run -------------------------------------------------------

    async def warmup(self, publisher: Publisher) -> None:
        """Touch every server once (a socket and a publish) so lazy imports and
        pools are set up before the memory baseline is taken."""
        user = user_id(self.plan.run_id, -1 - self.plan.index)
        for url in self.plan.urls:
            with contextlib.suppress(Exception):
                ws = await self._connect(url, user)
                try:
                    await self._wait_ready(ws)
                    body = orjson.dumps({"recipients": [user], "type": "bench.warmup", "data": {}})
                    await publisher.post(publish_url(url), body)
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(2):
                            await ws.recv()
                finally:
                    await ws.close()

    async def run(self) -> dict[str, Any]:
        plan = self.plan
        cpu0 = own_cpu_seconds()
        wall0 = time.perf_counter()
        pool = max([p.concurrency for p in plan.phases] + [1])
        publisher = make_publisher(plan.http_client, plan.api_key, pool, plan.http_timeout)
        try:
            if plan.warmup:
                await self.warmup(publisher)
            await self.hub.warmed()
            info = await self.open_sockets()
            info["worker"] = plan.index
            # A collection over tens of thousands of live objects (sockets,
            # frames, futures) stalls the loop for up to ~200 ms and delays
            # sends and receipts alike: no automatic collection while a phase
            # runs; collect between phases instead (sockets are idle then).
            _quiet_gc()
            await self.hub.opened(info)
            for i, spec in enumerate(plan.phases):
                result = await self.run_phase(publisher, spec)
                _quiet_gc()
                await self.hub.phase_done(i, result)
        finally:
            await publisher.close()
            await self.close_sockets()
            gc.unfreeze()
            gc.enable()
        return {
            "worker": plan.index,
            "cpu_s": own_cpu_seconds() - cpu0,
            "wall_s": time.perf_counter() - wall0,
            "closed_early": dict(self.closed_early),
            "max_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        }

    async def close_sockets(self) -> None:
        for task in self.readers:
            task.cancel()
        await asyncio.gather(*self.readers, return_exceptions=True)

        async def close(sock: Sock) -> None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(sock.ws.close(), 5)

        await asyncio.gather(*(close(s) for s in self.socks))
        if self._sse_session is not None:
            await self._sse_session.close()


def _quiet_gc() -> None:
    """Collect now, move the survivors out of the collector's sight, stop collecting."""
    gc.enable()
    gc.collect()
    gc.freeze()
    gc.disable()


def _error_key(exc: BaseException) -> str:
    if isinstance(exc, InvalidStatus):
        return f"http_{exc.response.status_code}"
    if isinstance(exc, ConnectionClosed) and exc.rcvd is not None:
        return f"closed_{exc.rcvd.code}"
    return type(exc).__name__


# --------------------------------------------------------------------------- process entry


class LocalHub:
    """In-process coordination (``--workers 1``): calls the coordinator directly."""

    def __init__(
        self,
        on_warmed: Callable[[], Awaitable[None]],
        on_opened: Callable[[list[dict[str, Any]]], Awaitable[None]],
        on_phase: Callable[[int, list[dict[str, Any]]], Awaitable[None]],
    ) -> None:
        self._on_warmed = on_warmed
        self._on_opened = on_opened
        self._on_phase = on_phase

    async def warmed(self) -> None:
        await self._on_warmed()

    async def opened(self, info: dict[str, Any]) -> None:
        await self._on_opened([info])

    async def phase_done(self, index: int, result: dict[str, Any]) -> None:
        await self._on_phase(index, [result])


class PipeHub:
    """Multi-process coordination: report over a pipe, block until released."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn

    async def _exchange(self, message: tuple[str, Any]) -> None:
        self.conn.send(message)
        loop = asyncio.get_running_loop()
        reply = await loop.run_in_executor(None, self.conn.recv)
        if reply != "go":
            raise RuntimeError(f"coordinator said {reply!r}")

    async def warmed(self) -> None:
        await self._exchange(("warmed", None))

    async def opened(self, info: dict[str, Any]) -> None:
        await self._exchange(("opened", info))

    async def phase_done(self, index: int, result: dict[str, Any]) -> None:
        await self._exchange(("phase", result))


def run_async(coro: Awaitable[Any]) -> Any:
    """Run on uvloop (falls back to the default loop if uvloop is missing)."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        return asyncio.run(coro)  # type: ignore[arg-type]
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)  # type: ignore[arg-type]


def worker_process(plan: WorkerPlan, conn: Any) -> None:
    """Entry point of a ``--workers`` child process."""
    try:
        final = run_async(Worker(plan, PipeHub(conn)).run())
        conn.send(("final", final))
    except BaseException as exc:
        with contextlib.suppress(Exception):
            conn.send(("failed", repr(exc)))
        raise
    finally:
        conn.close()
