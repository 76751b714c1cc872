"""Turn environment variables into validated settings values.

Each function reads a few variables, checks them, and raises
``ImproperlyConfigured`` with a message naming the variable to change.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import dj_database_url
import environ
from django.core.exceptions import ImproperlyConfigured

from notifications.origins import normalize_origin

# Dev-only values, refused at start when DEBUG is off.
DEV_SECRET_KEY = "dev-insecure-secret-key-do-not-use-in-production-0123456789"  # noqa: S105
DEV_HOSTS: list[str] = ["localhost", "127.0.0.1", "[::1]"]
LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "[::1]", "::1"})

_RATE = re.compile(r"\A\s*(\d+(?:\.\d+)?)\s*/\s*(s|sec|second|m|min|minute|h|hour)\s*\Z")
_PER = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60}


def secret_key(env: environ.Env, *, debug: bool) -> str:
    value: str = env.str("DJANGO_SECRET_KEY", default="")
    if value and value != DEV_SECRET_KEY:
        return value
    if not debug:
        raise ImproperlyConfigured(
            "DJANGO_SECRET_KEY is unset (or the dev value) while DEBUG is off: "
            "set DJANGO_SECRET_KEY to a long random string."
        )
    return DEV_SECRET_KEY


def allowed_origins(env: environ.Env) -> list[str] | None:
    """Exact ``scheme://host:port`` origins; None means the dev default (localhost only)."""
    raw: list[str] = env.list("ALLOWED_ORIGINS", default=[])
    if not raw:
        return None
    origins = []
    for item in raw:
        normalized = normalize_origin(item)
        if normalized is None:
            raise ImproperlyConfigured(
                f"ALLOWED_ORIGINS entry {item!r} is not an origin: "
                "use scheme://host[:port], e.g. https://app.example.com"
            )
        origins.append(normalized)
    return origins


def database(env: environ.Env, *, base_dir: Path) -> dict[str, Any]:
    url: str = env.str("DATABASE_URL", default="")
    if not url:
        url = f"sqlite:///{base_dir / 'db.sqlite3'}"
    try:
        db: dict[str, Any] = dict(dj_database_url.parse(url, conn_max_age=0))
    except ValueError as exc:
        raise ImproperlyConfigured(f"DATABASE_URL is not a database URL: {exc}") from exc
    if db["ENGINE"] == "django.db.backends.sqlite3":
        # WAL lets readers run beside the writer; IMMEDIATE takes the write
        # lock at BEGIN so two publishers queue on busy_timeout instead of
        # failing with "database is locked" when upgrading a read lock.
        # SQLite connections are cheap to keep and costly to open (the WAL
        # pragma takes a lock): keep them, checked before reuse.
        db["CONN_MAX_AGE"] = None
        db["CONN_HEALTH_CHECKS"] = True
        db["OPTIONS"] = {
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    elif db["ENGINE"] == "django.db.backends.postgresql":
        # Django closes its connection after every request and every
        # database_sync_to_async call (CONN_MAX_AGE=0); psycopg's pool makes
        # that a return to the pool instead of a new TCP + auth handshake,
        # and bounds connections per process whatever the socket count.
        db.setdefault("OPTIONS", {})
        db["OPTIONS"].setdefault("connect_timeout", 5)
        db["OPTIONS"]["pool"] = {
            "min_size": env.int("DATABASE_POOL_MIN", default=2),
            "max_size": env.int("DATABASE_POOL_MAX", default=16),
            "timeout": env.float("DATABASE_POOL_TIMEOUT", default=10.0),
        }
    return db


def check_debug_hosts(*, debug: bool, hosts: list[str]) -> None:
    """DEBUG leaks tracebacks and settings: refuse it when serving non-local hosts."""
    if not debug:
        return
    # "*" alone is what throwaway containers and test harnesses use; it gets a
    # warning at start-up (service/asgi.py), named public hosts are refused.
    public = [h for h in hosts if h.lower() not in LOCAL_HOSTS and h != "*"]
    if public:
        raise ImproperlyConfigured(
            f"DEBUG must be off when serving non-local hosts: ALLOWED_HOSTS has {public}. "
            "Set DEBUG=false (with DJANGO_SECRET_KEY, JWT and publisher keys), or restrict "
            "ALLOWED_HOSTS to localhost, 127.0.0.1 and [::1]."
        )


def rate(value: str, name: str) -> tuple[float, float]:
    """``1000/s`` -> (tokens per second, burst); burst is twice the rate per second."""
    match = _RATE.match(value)
    if not match or float(match.group(1)) <= 0:
        raise ImproperlyConfigured(f"{name} must look like 1000/s or 60/m, got {value!r}.")
    per_second = float(match.group(1)) / _PER.get(match.group(2), 3600)
    return per_second, max(1.0, 2 * float(match.group(1)))


# The contract's largest publish; the recipient burst always holds it.
MAX_RECIPIENTS = 10_000


def recipient_rate(value: str) -> tuple[float, float]:
    """NOTIFY_PUBLISH_RECIPIENT_RATE: as ``rate``, with a burst of at least
    MAX_RECIPIENTS, so that every publish the contract allows can pass."""
    per_second, burst = rate(value, "NOTIFY_PUBLISH_RECIPIENT_RATE")
    return per_second, max(burst, float(MAX_RECIPIENTS))


LOG_FORMATS = ("json", "text")


def log_format(env: environ.Env, *, debug: bool, at_terminal: bool) -> str:
    """``NOTIFY_LOG_FORMAT`` (json | text); by default text for a person (dev mode
    or a terminal), JSON for log collectors (production, output not a terminal)."""
    if "NOTIFY_JSON_LOGS" in env:
        raise ImproperlyConfigured(
            "NOTIFY_JSON_LOGS is no longer read: set NOTIFY_LOG_FORMAT=json (or text) instead."
        )
    default = "text" if debug or at_terminal else "json"
    value: str = env.str("NOTIFY_LOG_FORMAT", default="").strip().lower() or default
    if value not in LOG_FORMATS:
        raise ImproperlyConfigured(f"NOTIFY_LOG_FORMAT must be json or text, got {value!r}.")
    return value


def logging_config(env: environ.Env, *, log_format: str) -> dict[str, Any]:
    level: str = env.str("LOG_LEVEL", default="INFO").upper()
    formatter = {
        "()": "service.logs.JsonFormatter" if log_format == "json" else "service.logs.TextFormatter"
    }
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {
            "scrub": {"()": "service.logs.ScrubSecretsFilter"},
            # Django logs a bad Host header (answered 400) at ERROR with a
            # traceback: the client's mistake, not the service's.
            "client_error": {"()": "service.logs.ClientErrorFilter"},
        },
        "formatters": {"lines": formatter},
        "handlers": {
            "stdout": {
                "class": "logging.StreamHandler",
                "formatter": "lines",
                "filters": ["scrub", "client_error"],
            }
        },
        "root": {"handlers": ["stdout"], "level": level},
        "loggers": {
            "django": {"level": level},
            "channels_redis": {"level": "WARNING"},
            # The websockets state machine's "connection open" / "connection
            # closed" at INFO, two lines per socket that repeat uvicorn's
            # '"WebSocket /path" [accepted]' without the client or the path
            # (service/ws_protocol.py); its warnings and errors stay.
            "websockets": {"level": level if level == "DEBUG" else "WARNING"},
        },
    }
