"""The smaller holes of the attack pass (issue 11, docs/security.md findings 12-17),
each against a real uvicorn process (SQLite, in-memory layer), over real sockets.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from tests.live.conftest import SHOP_SECRET, make_token, new_user, server_env, user_headers
from tests.security.test_ws_abuse import ERROR_MARKERS, upgrade_request
from tests.support.live import log_flushed
from tests.support.servers import LiveServer

pytestmark = [pytest.mark.live, pytest.mark.timeout(180)]

PUBLISH = "/api/v1/notifications"
SECURITY = ("X-Content-Type-Options", "Content-Security-Policy", "X-Frame-Options")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    db: Path = tmp_path_factory.mktemp("attack") / "db.sqlite3"
    live = LiveServer(server_env(f"sqlite:///{db.resolve()}"), startup_timeout=30.0)
    try:
        yield live
    finally:
        live.close()


async def no_errors_since(http: httpx.AsyncClient, server: LiveServer, offset: int) -> None:
    await log_flushed(http, server)  # every line of the requests answered so far
    problems = [
        line
        for line in server.log_text()[offset:].splitlines()
        if any(marker in line for marker in ERROR_MARKERS)
    ]
    assert not problems, "\n".join(problems[:20])


async def post(http: httpx.AsyncClient, server: LiveServer, body: bytes) -> httpx.Response:
    headers = {"Authorization": f"Bearer {SHOP_SECRET}", "Content-Type": "application/json"}
    return await http.post(server.url + PUBLISH, content=body, headers=headers)


async def test_deep_data_is_a_400_never_a_500(server: LiveServer, http: httpx.AsyncClient) -> None:
    offset = len(server.log_text())
    for depth in (65, 300, 1000):
        data = '{"d": ' + "[" * depth + "]" * depth + "}"
        body = f'{{"recipients": ["deep"], "type": "t", "data": {data}}}'.encode()
        response = await post(http, server, body)
        assert response.status_code == 400, (depth, response.text)
    shallow = '{"d": ' + "[" * 60 + "]" * 60 + "}"
    body = f'{{"recipients": ["deep"], "type": "t", "data": {shallow}}}'.encode()
    assert (await post(http, server, body)).status_code == 202
    await no_errors_since(http, server, offset)


async def test_integers_beyond_64_bits_are_refused_and_64_bit_ones_kept_exact(
    server: LiveServer, http: httpx.AsyncClient
) -> None:
    user = new_user("ints")
    for number in ("18446744073709551616", "-9223372036854775809", "1" + "0" * 30):
        body = f'{{"recipients": ["{user}"], "type": "t", "data": {{"n": {number}}}}}'
        response = await post(http, server, body.encode())
        assert response.status_code == 400, (number, response.text)
    exact = '{"a": 18446744073709551615, "b": -9223372036854775808, "c": 1e19}'
    body = f'{{"recipients": ["{user}"], "type": "t", "data": {exact}}}'
    assert (await post(http, server, body.encode())).status_code == 202
    listed = await http.get(server.url + "/api/v1/me/notifications", headers=user_headers(user))
    (stored,) = listed.json()["results"]
    assert stored["data"] == {"a": 18446744073709551615, "b": -9223372036854775808, "c": 1e19}


async def test_the_largest_contract_body_fits(server: LiveServer, http: httpx.AsyncClient) -> None:
    """10,000 recipients of 128 four-byte characters, 64 KiB of data, the longest
    title and body, compact JSON: about 5.3 MB (before: 413 over 1 MiB)."""
    recipients = [f"{i:05d}" + "\U0001f600" * 123 for i in range(10_000)]
    data = {"x": "a" * (64 * 1024 - 8)}
    payload = {
        "recipients": recipients,
        "type": "t",
        "title": "\U0001f600" * 200,
        "body": "\U0001f600" * 2000,
        "data": data,
    }
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
    assert len(body) > 5_000_000
    response = await post(http, server, body)
    assert response.status_code == 202, response.text[:300]
    assert response.json()["recipients"] == 10_000


async def test_the_413_and_static_answers_carry_security_headers(
    server: LiveServer, http: httpx.AsyncClient
) -> None:
    # Headers only: over DRAIN_BYTES, the server answers 413 on Content-Length at once.
    reader, writer = await asyncio.open_connection(server.host, server.port)
    try:
        writer.write(
            f"POST {PUBLISH} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Bearer {SHOP_SECRET}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {64 * 1024 * 1024}\r\n\r\n".encode()
        )
        await writer.drain()
        head = (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)).decode().lower()
    finally:
        writer.close()
    assert head.startswith("http/1.1 413"), head
    missing = [name for name in SECURITY if f"\r\n{name.lower()}:" not in head]
    assert not missing, ("413", missing)
    static = await http.get(server.url + "/static/notify/notify-client.js")
    assert static.status_code == 200
    missing = [name for name in SECURITY if name not in static.headers]
    assert not missing, ("static", missing)


async def test_a_static_path_traversal_is_a_quiet_404(
    server: LiveServer, http: httpx.AsyncClient
) -> None:
    offset = len(server.log_text())
    for path in ("/static/..%2f..%2fetc%2fpasswd", "/static/notify/..%2f..%2f..%2fmanage.py"):
        response = await http.get(server.url + path)
        assert response.status_code == 404, (path, response.status_code)
        assert "X-Content-Type-Options" in response.headers
    await no_errors_since(http, server, offset)


async def handshake(server: LiveServer, target: str, token: str | None = None) -> bytes:
    """The status line and headers the server answers to an upgrade of ``target``."""
    request = upgrade_request(token).replace(b"/ws/notifications", target.encode())
    reader, writer = await asyncio.open_connection(server.host, server.port)
    try:
        writer.write(request)
        await writer.drain()
        return await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
    finally:
        writer.close()


async def test_only_the_literal_token_parameter_authenticates_and_no_form_is_logged(
    server: LiveServer, http: httpx.AsyncClient
) -> None:
    token = make_token(new_user("query"))
    _head, payload, signature = token.split(".")
    encoded = "%65" + token[1:]  # 'e' percent-encoded
    variants = {
        f"tok%65n={token}": b"403",
        f"%74oken={token}": b"403",
        f"TOKEN={token}": b"403",
        f"token={encoded}": b"403",
        f"tok%65n={encoded}": b"403",
        f"tok%2565n={quote(encoded)}": b"403",
        f"token={token}": b"101",
    }
    offset = len(server.log_text())
    for query, status in variants.items():
        answer = await handshake(server, f"/ws/notifications?{query}")
        assert answer.split(b" ", 2)[1] == status, (query, answer[:100])
    await log_flushed(http, server)  # the access lines of the last handshakes
    log = server.log_text()[offset:]
    assert "/ws/notifications?" in log
    for part in (payload, signature):
        assert part not in log, f"token part {part[:12]}... in the log"


@pytest.mark.parametrize("sub", ["nul\x00user", "lone\ud800surrogate"], ids=["nul", "surrogate"])
async def test_odd_sub_values_are_refused(
    server: LiveServer, http: httpx.AsyncClient, sub: str
) -> None:
    offset = len(server.log_text())
    token = make_token(sub)
    answer = await handshake(server, "/ws/notifications", token)
    assert answer.split(b" ", 2)[1] == b"403", answer[:100]
    response = await http.get(
        server.url + "/api/v1/me/notifications", headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 401, response.text
    await no_errors_since(http, server, offset)


async def raw_status(server: LiveServer, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection(server.host, server.port)
    try:
        writer.write(request)
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), 30)
    finally:
        writer.close()
    return line.split(b" ", 2)[1]


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /healthz HTTP/1.1\r\nHost: evil.example\r\n\r\n",
        b"GET /api/v1/me/notifications HTTP/1.1\r\nHost: bad host!\r\n\r\n",
        b"GET /demo HTTP/1.1\r\nHost: \xff\xfe\r\n\r\n",
        b"GET /\xff\xfe HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        b"GET /healthz?\xff=1 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        b"GET /%ff%fe HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        b"GET /api/v1/me/notifications HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Authorization: Bearer \xff\xfe\r\n\r\n",
    ],
    ids=["host", "host-syntax", "host-bytes", "path-bytes", "query-bytes", "path-escapes", "auth"],
)
async def test_unauthenticated_junk_is_a_4xx_and_at_most_a_warning(
    server: LiveServer, http: httpx.AsyncClient, request_bytes: bytes
) -> None:
    """Invalid Host headers logged ERROR with a traceback (django.security) before."""
    offset = len(server.log_text())
    status = await raw_status(server, request_bytes)
    assert status.startswith(b"4"), status
    await no_errors_since(http, server, offset)
