"""Contract rules checked on a live production server, configured by environment.

* ES256 user tokens verified with ``JWT_PUBLIC_KEY`` (an asymmetric issuer),
  on the user API and the socket; an HS256 token is refused there.
* ``413`` for a publish body over the limit sent chunked, without a
  ``Content-Length``: the server stops reading, answers 413 and stores nothing.
"""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from websockets.exceptions import InvalidStatus

from tests.production.conftest import (
    ME_PATH,
    PUBLISH_PATH,
    WAIT,
    ServerPool,
    Sockets,
    make_token,
    new_user,
    prod_env,
    publish,
    publisher_headers,
    stored_notifications_as,
    ws_connect,
)
from tests.support.servers import LiveServer, RedisServer

pytestmark = pytest.mark.live

EC_KEY = ec.generate_private_key(ec.SECP256R1())
EC_PRIVATE_PEM = EC_KEY.private_bytes(
    serialization.Encoding.PEM,
    serialization.PrivateFormat.PKCS8,
    serialization.NoEncryption(),
).decode()
EC_PUBLIC_PEM = (
    EC_KEY.public_key()
    .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    .decode()
)
MAX_BODY = 4096


def es256_token(sub: str) -> str:
    now = int(time.time())
    return jwt.encode({"sub": sub, "iat": now, "exp": now + 600}, EC_PRIVATE_PEM, "ES256")


@pytest.fixture(scope="module")
def es256_server(module_pool: ServerPool, module_redis: RedisServer, module_db: str) -> LiveServer:
    env = prod_env(
        module_db,
        module_redis.url,
        JWT_ALGORITHMS="ES256",
        JWT_PUBLIC_KEY=EC_PUBLIC_PEM,
        NOTIFY_MAX_BODY_BYTES=str(MAX_BODY),
    )
    del env["JWT_SECRET"]
    return module_pool.start(env)


async def test_es256_user_tokens_verify_with_jwt_public_key(
    es256_server: LiveServer, sockets: Sockets, http: httpx.AsyncClient
) -> None:
    user = new_user("es256")
    token = es256_token(user)
    me = await http.get(es256_server.url + ME_PATH, headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200, me.text

    sock = await sockets.open(es256_server, None, headers={"Authorization": f"Bearer {token}"})
    await publish(http, es256_server, [user], title="signed with ES256")
    (frame,) = await sock.wait_count(1)
    assert frame["title"] == "signed with ES256"

    # HS256 is not allowed on this server (JWT_ALGORITHMS=ES256): refused on both.
    hs256 = make_token(user)
    refused = await http.get(
        es256_server.url + ME_PATH, headers={"Authorization": f"Bearer {hs256}"}
    )
    assert refused.status_code == 401, refused.text
    with pytest.raises(InvalidStatus) as closed:
        ws = await ws_connect(es256_server, None, headers={"Authorization": f"Bearer {hs256}"})
        await ws.close()
    assert closed.value.response.status_code == 403


async def chunked_post(server: LiveServer, raw: bytes, *, finish: bool) -> tuple[int, bytes]:
    """POST ``raw`` in 1 KiB chunks, no Content-Length; the status and body answered.

    With ``finish=False`` the terminating chunk is never sent: the client stops
    once it is over the limit and waits for the answer, as a server that
    answers early must let it (every byte sent has been read by then, so the
    server's close is a clean FIN, not a reset).
    """
    reader, writer = await asyncio.open_connection(server.host, server.port)
    try:
        head = "".join(
            f"{name}: {value}\r\n"
            for name, value in {
                "Host": "localhost",
                **publisher_headers(),
                "Transfer-Encoding": "chunked",
                "Connection": "close",
            }.items()
        )
        writer.write(f"POST {PUBLISH_PATH} HTTP/1.1\r\n{head}\r\n".encode())
        for offset in range(0, len(raw), 1024):
            piece = raw[offset : offset + 1024]
            writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            await writer.drain()
        if finish:
            writer.write(b"0\r\n\r\n")
            await writer.drain()
        answer = await asyncio.wait_for(reader.read(), WAIT)
    finally:
        writer.close()
    status_line, _, rest = answer.partition(b"\r\n")
    _headers, _, body = rest.partition(b"\r\n\r\n")
    return int(status_line.split()[1]), body


async def test_chunked_body_over_the_limit_without_content_length_is_413(
    es256_server: LiveServer, http: httpx.AsyncClient
) -> None:
    user = new_user("chunked")

    def body(title: str) -> bytes:
        return json.dumps({"recipients": [user], "type": "chunked", "title": title}).encode()

    # The last byte sent is the first over the limit: nothing is left unread.
    over = body("x" * (2 * MAX_BODY))[: MAX_BODY + 1]
    status, answer = await chunked_post(es256_server, over, finish=False)
    assert status == 413, answer
    assert set(json.loads(answer)) == {"detail"}, answer

    # Under the limit, chunked is accepted; only that one is stored.
    status, answer = await chunked_post(es256_server, body("small"), finish=True)
    assert status == 202, answer
    frames = await stored_notifications_as(
        http, es256_server, {"Authorization": f"Bearer {es256_token(user)}"}
    )
    assert [f["title"] for f in frames] == ["small"]
