"""Raw-socket helpers for tests that misbehave on purpose."""

from __future__ import annotations

import socket

from tests.support.servers import LiveServer


def tiny_buffer_socket(server: LiveServer) -> socket.socket:
    """A connected TCP socket whose receive buffer is as small as the kernel allows,
    for clients that stop reading (the server's writes back up quickly)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(10)
    try:
        sock.connect((server.host, server.port))
    except BaseException:
        sock.close()
        raise
    sock.setblocking(False)
    return sock
