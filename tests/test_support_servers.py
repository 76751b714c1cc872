"""The test harness itself: real redis-server and PostgreSQL start, stop and answer."""

from __future__ import annotations

import socket
from pathlib import Path

import psycopg
import pytest
import redis

from tests.support.processes import wait_until_ready
from tests.support.servers import PostgresServer, RedisServer, free_port

pytestmark = pytest.mark.live


def test_free_port_is_bindable_and_not_repeated() -> None:
    ports = {free_port() for _ in range(20)}
    assert len(ports) == 20
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", ports.pop()))


def test_redis_set_get(redis_server: RedisServer) -> None:
    assert redis_server.url == f"redis://127.0.0.1:{redis_server.port}/0"
    with redis.Redis.from_url(redis_server.url) as client:
        client.set("harness:key", b"value")
        assert client.get("harness:key") == b"value"
        client.delete("harness:key")


def test_redis_outage_and_comeback(fresh_redis_server: RedisServer) -> None:
    server = fresh_redis_server
    port = server.port
    with server.client() as client:
        client.set("k", "v")

    server.stop()
    assert not server.is_running
    with server.client() as client, pytest.raises(redis.ConnectionError):
        client.ping()

    server.start()
    assert server.port == port
    with server.client() as client:
        assert client.ping() is True
        assert client.get("k") is None  # nothing is persisted


def test_redis_close_removes_tmp_dir() -> None:
    with RedisServer() as server:
        tmp_dir = server.tmp_dir
        assert tmp_dir.is_dir()
    assert not tmp_dir.exists()
    with pytest.raises(RuntimeError, match="closed"):
        server.start()


def test_postgres_select_1(postgres_server: PostgresServer) -> None:
    url = postgres_server.url
    assert url == (
        f"postgres://{postgres_server.user}@127.0.0.1:{postgres_server.port}/"
        f"{postgres_server.dbname}"
    )
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
        settings: dict[str, str] = dict(
            conn.execute(
                "SELECT name, setting FROM pg_settings WHERE name = ANY(%s)",
                (["fsync", "max_connections", "listen_addresses"],),
            ).fetchall()
        )
    assert settings == {
        "fsync": "off",
        "max_connections": "300",
        "listen_addresses": "127.0.0.1",
    }


def test_postgres_create_database(postgres_server: PostgresServer) -> None:
    url = postgres_server.create_database("harness_extra")
    assert url.endswith(f":{postgres_server.port}/harness_extra")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (id int primary key)")
        conn.execute("INSERT INTO t VALUES (1)")
        assert conn.execute("SELECT current_database(), count(*) FROM t").fetchone() == (
            "harness_extra",
            1,
        )
    postgres_server.drop_database("harness_extra")

    random_url = postgres_server.create_database()
    with psycopg.connect(random_url) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_a_server_that_exits_at_start_says_so_with_its_log() -> None:
    port = free_port()
    with pytest.raises(RuntimeError) as raised:
        RedisServer(port=port, extra_args=["--no-such-directive", "1"])
    message = str(raised.value)
    assert message.startswith(f"redis-server on port {port} exited with code ")
    assert "no-such-directive" in message  # redis-server's own complaint, from its log


class _NeverReady(RedisServer):
    """A real redis-server whose readiness probe never passes."""

    def _answers_ping(self) -> str | None:
        return "still loading"


def test_a_server_that_never_gets_ready_is_stopped_and_says_why() -> None:
    server = _NeverReady(startup_timeout=0.5, autostart=False)
    try:
        with pytest.raises(RuntimeError) as raised:
            server.start()
        assert not server.is_running
        message = str(raised.value)
        head, tail = message.split(":\n", 1)
        assert head == f"redis-server on port {server.port} did not answer PING within 0.5s" + (
            " (still loading)"
        )
        assert server.log_text().startswith(tail)  # its log as it was then
    finally:
        server.close()


def test_waiting_names_the_last_error_and_lets_others_through(tmp_path: Path) -> None:
    log = tmp_path / "thing.log"
    log.write_text("first line\nlast line\n")

    def refused() -> str | None:
        raise ConnectionRefusedError("nobody home")

    with pytest.raises(RuntimeError) as raised:
        wait_until_ready(
            refused, what="the thing", goal="answer", timeout=0.2, retry_on=(OSError,),
            log_path=log, interval=0.01,
        )  # fmt: skip
    assert str(raised.value) == (
        "the thing did not answer within 0.2s (ConnectionRefusedError: nobody home):\n"
        "first line\nlast line"
    )
    with pytest.raises(ConnectionRefusedError):  # not one to wait out
        wait_until_ready(refused, what="the thing", goal="answer", timeout=5.0)
