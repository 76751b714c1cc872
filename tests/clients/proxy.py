"""A small real TCP proxy in front of a LiveServer that misbehaves on cue (no HTTP mocking).

It understands just enough HTTP/1.1 to find request and response boundaries
(Content-Length or chunked), so keep-alive connections work, and applies one
:class:`Fault` per request in arrival order; once the list is used up it
forwards everything untouched. Every request it saw is recorded.

``refuse_upgrade=True`` makes it a proxy that does not let WebSockets
through: every request with an ``Upgrade`` header is answered 403 and never
forwarded. Event streams (``text/event-stream``) are relayed as they come.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from typing import BinaryIO

from tests.support.servers import LOCALHOST


@dataclass(frozen=True)
class Fault:
    """What to do with one request.

    ``forward``: pass it on. ``drop_response``: pass it on, let the server
    answer, then close the client's connection without sending a byte of the
    answer (a lost answer). ``stall``: pass it on, then hold the answer for
    ``seconds`` and close (a read timeout). ``reset``: close at once (RST),
    never forwarding. ``status``: answer ``status`` (with ``Retry-After`` when
    given) without forwarding.
    """

    kind: str
    status: int = 0
    retry_after: str | None = None
    seconds: float = 0.0

    @classmethod
    def forward(cls) -> Fault:
        return cls("forward")

    @classmethod
    def drop_response(cls) -> Fault:
        return cls("drop_response")

    @classmethod
    def stall(cls, seconds: float) -> Fault:
        return cls("stall", seconds=seconds)

    @classmethod
    def reset(cls) -> Fault:
        return cls("reset")

    @classmethod
    def answer(cls, status: int, retry_after: str | None = None) -> Fault:
        return cls("status", status=status, retry_after=retry_after)


@dataclass
class SeenRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float
    fault: Fault = field(default_factory=Fault.forward)


_REASONS = {429: "Too Many Requests", 503: "Service Unavailable", 502: "Bad Gateway"}


def _read_head(stream: BinaryIO) -> tuple[bytes, list[bytes]] | None:
    """The raw head (through the blank line) and its lines; None on EOF before a head."""
    lines: list[bytes] = []
    raw = b""
    while True:
        line = stream.readline(65537)
        if not line:
            return None
        raw += line
        if line in (b"\r\n", b"\n"):
            return raw, lines
        lines.append(line.rstrip(b"\r\n"))


def _headers(lines: list[bytes]) -> dict[str, str]:
    result: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.decode("latin1").partition(":")
        result[name.strip().lower()] = value.strip()
    return result


def _read_body(stream: BinaryIO, headers: dict[str, str], *, until_eof: bool) -> bytes:
    if "chunked" in headers.get("transfer-encoding", "").lower():
        raw = b""
        while True:
            size_line = stream.readline()
            raw += size_line
            size = int(size_line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while True:  # trailers, then the blank line
                    trailer = stream.readline()
                    raw += trailer
                    if trailer in (b"\r\n", b"\n", b""):
                        return raw
            raw += stream.read(size + 2)
    if "content-length" in headers:
        return stream.read(int(headers["content-length"]))
    return stream.read() if until_eof else b""


def _relay(source: BinaryIO, conn: socket.socket) -> None:
    """Copy a streamed answer to the client as it arrives, until either side closes."""
    while True:
        data = source.read1(65536)  # type: ignore[attr-defined]
        if not data:
            return
        conn.sendall(data)


def _tunnel(
    client: BinaryIO, conn: socket.socket, server: BinaryIO, upstream: socket.socket
) -> None:
    """Relay both ways (an upgraded connection) until either side closes."""

    def client_to_server() -> None:
        with contextlib.suppress(OSError):
            _relay(client, upstream)
        with contextlib.suppress(OSError):
            upstream.shutdown(socket.SHUT_WR)

    thread = threading.Thread(target=client_to_server, daemon=True)
    thread.start()
    with contextlib.suppress(OSError):
        _relay(server, conn)
    with contextlib.suppress(OSError):
        conn.shutdown(socket.SHUT_RDWR)
    thread.join(timeout=5)


class FaultyProxy:
    """``FaultyProxy(upstream_port, [Fault.drop_response()])``; ``.url``; ``.close()``."""

    def __init__(
        self, upstream_port: int, faults: list[Fault] | None = None, *, refuse_upgrade: bool = False
    ) -> None:
        self.upstream = (LOCALHOST, upstream_port)
        self.refuse_upgrade = refuse_upgrade
        self.refused_upgrades = 0
        self.faults = list(faults or [])
        self.requests: list[SeenRequest] = []
        self._lock = threading.Lock()
        self._listener = socket.create_server((LOCALHOST, 0))
        self.port: int = self._listener.getsockname()[1]
        self.url = f"http://{LOCALHOST}:{self.port}"
        self._sockets: set[socket.socket] = set()
        self._closed = False
        self._thread = threading.Thread(target=self._accept_forever, daemon=True)
        self._thread.start()

    def __enter__(self) -> FaultyProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self._listener.close()
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.close()
        self._thread.join(timeout=5)

    def _track(self, sock: socket.socket) -> socket.socket:
        with self._lock:
            self._sockets.add(sock)
        return sock

    def _next_fault(self) -> Fault:
        with self._lock:
            return self.faults.pop(0) if self.faults else Fault.forward()

    def _accept_forever(self) -> None:
        self._listener.settimeout(0.1)  # so that close() is noticed at once
        while not self._closed:
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(None)
            self._track(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        upstream: socket.socket | None = None
        up_stream: BinaryIO | None = None
        stream = conn.makefile("rb")
        try:
            while not self._closed:
                head = _read_head(stream)
                if head is None:
                    return
                raw_head, lines = head
                headers = _headers(lines)
                body = _read_body(stream, headers, until_eof=False)
                method, path, _ = lines[0].decode("latin1").split(" ", 2)
                if self.refuse_upgrade and "upgrade" in headers:
                    with self._lock:
                        self.refused_upgrades += 1
                    conn.sendall(
                        b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    )
                    return
                fault = self._next_fault()
                with self._lock:
                    self.requests.append(
                        SeenRequest(method, path, headers, body, time.monotonic(), fault)
                    )
                if fault.kind == "reset":
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    return
                if fault.kind == "status":
                    payload = b'{"detail": "injected by the test proxy"}'
                    extra = f"Retry-After: {fault.retry_after}\r\n" if fault.retry_after else ""
                    conn.sendall(
                        (
                            f"HTTP/1.1 {fault.status} {_REASONS.get(fault.status, 'Error')}\r\n"
                            f"Content-Type: application/json\r\n{extra}"
                            f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n"
                        ).encode()
                        + payload
                    )
                    return
                if upstream is None:
                    upstream = self._track(socket.create_connection(self.upstream, timeout=30))
                    up_stream = upstream.makefile("rb")
                assert up_stream is not None
                upstream.sendall(raw_head + body)
                response = _read_head(up_stream)
                if response is None:
                    return
                raw_response, response_lines = response
                response_headers = _headers(response_lines)
                if response_lines[0].split(b" ")[1:2] == [b"101"]:  # a WebSocket: tunnel it
                    conn.sendall(raw_response)
                    _tunnel(stream, conn, up_stream, upstream)
                    return
                if "text/event-stream" in response_headers.get("content-type", ""):
                    conn.sendall(raw_response)
                    _relay(up_stream, conn)
                    return
                response_body = _read_body(
                    up_stream,
                    response_headers,
                    until_eof=response_headers.get("connection", "").lower() == "close",
                )
                if fault.kind == "drop_response":
                    return
                if fault.kind == "stall":
                    time.sleep(fault.seconds)
                    return
                conn.sendall(raw_response + response_body)
                if response_headers.get("connection", "").lower() == "close":
                    return
        except OSError:
            return
        finally:
            stream.close()
            if up_stream is not None:
                up_stream.close()
            for sock in (conn, upstream):
                if sock is not None:
                    with contextlib.suppress(OSError):
                        sock.close()
