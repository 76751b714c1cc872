"""Infrastructure fixtures: real Redis / PostgreSQL / app servers (no mocks).

App-domain fixtures belong in the per-area conftest files (e.g.
``tests/notifications/conftest.py``), not here.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pytest

from tests.support.servers import LiveServer, LiveServerFactory, PostgresServer, RedisServer


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One redis-server for the whole session (shared: don't stop it; flush what you use).

    Tests that stop/start Redis (outage simulation) should use ``fresh_redis_server``.
    """
    with RedisServer() as server:
        yield server


@pytest.fixture
def fresh_redis_server() -> Iterator[RedisServer]:
    """A private redis-server for one test: free to ``stop()`` / ``start()``."""
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One PostgreSQL cluster for the session, started on first use only.

    ``postgres_server.url`` is a ready database; ``create_database()`` makes more.
    """
    with PostgresServer() as server:
        yield server


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """URL of a fresh (not yet created) SQLite file DB for this test."""
    return f"sqlite:///{(tmp_path / 'db.sqlite3').resolve()}"


@pytest.fixture
def live_server_factory() -> Iterator[LiveServerFactory]:
    """Start real uvicorn app servers; all are stopped when the test ends.

    ``make(env=None, migrate=True, *, port=None, extra_args=(), startup_timeout=20.0)``
    returns a started :class:`LiveServer`. Their logs are printed at teardown,
    which pytest shows only when the test fails.
    """
    servers: list[LiveServer] = []

    def make(
        env: Mapping[str, str] | None = None,
        migrate: bool = True,
        *,
        port: int | None = None,
        extra_args: Sequence[str] = (),
        startup_timeout: float = 20.0,
    ) -> LiveServer:
        server = LiveServer(
            env,
            migrate=migrate,
            port=port,
            extra_args=extra_args,
            startup_timeout=startup_timeout,
            autostart=False,
        )
        servers.append(server)
        server.start()
        return server

    yield make

    errors: list[BaseException] = []
    for server in reversed(servers):
        try:
            server.stop()
        except BaseException as exc:  # keep stopping the others
            errors.append(exc)
        print(f"----- {server!r} log (tail) -----")
        print("\n".join(server.log_text().splitlines()[-200:]))
        server.close()
    if errors:
        raise errors[0]
