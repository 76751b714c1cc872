"""Infrastructure fixtures: real Redis / PostgreSQL / app servers (no mocks).

App-domain fixtures belong in the per-area conftest files (e.g.
``tests/notifications/conftest.py``), not here.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.support.pgbouncer import PgBouncer
from tests.support.redis_cluster import RedisCluster
from tests.support.servers import LiveServer, LiveServerFactory, PostgresServer, RedisServer

# pytest-django's fixtures that give a test the database.
_DATABASE_FIXTURES = frozenset(
    {"db", "transactional_db", "django_db_reset_sequences", "django_db_serialized_rollback"}
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The PostgreSQL and PgBouncer passes (``NOTIFY_TEST_DATABASE``) run only
    the tests that use the database: the others ran on the SQLite pass, and
    would run the same code again."""
    if os.environ.get("NOTIFY_TEST_DATABASE", "sqlite") not in ("postgres", "pgbouncer"):
        return
    keep: list[pytest.Item] = []
    drop: list[pytest.Item] = []
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        uses_db = item.get_closest_marker("django_db") is not None or bool(
            fixtures & _DATABASE_FIXTURES
        )
        (keep if uses_db else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


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
def redis_cluster() -> Iterator[RedisCluster]:
    """One Redis Cluster (3 masters, 3 replicas) for the session: don't break it.

    Tests that kill a master or move slots use ``fresh_redis_cluster``.
    """
    with RedisCluster() as cluster:
        yield cluster


@pytest.fixture
def fresh_redis_cluster() -> Iterator[RedisCluster]:
    """A private Redis Cluster for one test: free to kill masters and move slots."""
    with RedisCluster() as cluster:
        yield cluster


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One PostgreSQL cluster for the session, started on first use only.

    ``postgres_server.url`` is a ready database; ``create_database()`` makes more.
    """
    with PostgresServer(durable=False) as server:  # test-only speed settings
        yield server


@pytest.fixture(scope="session")
def pgbouncer(postgres_server: PostgresServer) -> Iterator[PgBouncer]:
    """A PgBouncer in transaction mode in front of the session's PostgreSQL."""
    with PgBouncer(postgres_server) as bouncer:
        yield bouncer


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


@pytest.fixture(scope="session")
def django_db_modify_db_settings(
    django_db_modify_db_settings_parallel_suffix: None, request: pytest.FixtureRequest
) -> None:
    """With NOTIFY_TEST_DATABASE=postgres, the database tests run on a real PostgreSQL;
    with NOTIFY_TEST_DATABASE=pgbouncer, on it through a real PgBouncer in
    transaction mode (docs/deploy.md#pgbouncer).

    Settings are loaded (for SQLite) before any fixture runs, so the default
    connection's settings are rewritten in place, from the same code that
    reads DATABASE_URL in production (``service.config.database``).
    """
    if os.environ.get("NOTIFY_TEST_DATABASE", "sqlite") not in ("postgres", "pgbouncer"):
        return
    import environ
    from django.conf import settings
    from django.db import connections

    from service import config

    server: PostgresServer = request.getfixturevalue("postgres_server")
    url = server.url
    if os.environ["NOTIFY_TEST_DATABASE"] == "pgbouncer":
        url = request.getfixturevalue("pgbouncer").url
    env = environ.Env()
    previous = os.environ.get("DATABASE_URL")
    os.environ["DATABASE_URL"] = url
    try:
        wanted = config.database(env, base_dir=Path.cwd())
    finally:
        if previous is None:
            os.environ.pop("DATABASE_URL", None)
        else:
            os.environ["DATABASE_URL"] = previous
    current = settings.DATABASES["default"]
    for key in ("ENGINE", "NAME", "USER", "PASSWORD", "HOST", "PORT", "OPTIONS"):
        current[key] = wanted.get(key, "")
    current["CONN_MAX_AGE"] = wanted.get("CONN_MAX_AGE", 0)
    current["CONN_HEALTH_CHECKS"] = wanted.get("CONN_HEALTH_CHECKS", False)
    current["TEST"] = {
        "NAME": None,
        "MIRROR": None,
        "CHARSET": None,
        "COLLATION": None,
        "MIGRATE": True,
    }
    connections["default"].close()
    del connections["default"]


@pytest.fixture(scope="session")
def django_db_setup(
    django_db_setup: None, django_db_blocker: Any, request: pytest.FixtureRequest
) -> Iterator[None]:
    """On PostgreSQL, end sessions that worker threads left on the test database
    (asgiref's thread pools outlive the tests) so that it can be dropped."""
    yield
    if os.environ.get("NOTIFY_TEST_DATABASE", "sqlite") not in ("postgres", "pgbouncer"):
        return
    from django.db import connection

    server: PostgresServer = request.getfixturevalue("postgres_server")
    with django_db_blocker.unblock(), server.connect() as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            [connection.settings_dict["NAME"]],
        )
