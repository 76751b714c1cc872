"""Turn environment variables into validated settings values.

Each function reads a few variables, checks them, and raises
``ImproperlyConfigured`` with a message naming the variable to change.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import dj_database_url
import environ
from django.core.exceptions import ImproperlyConfigured

# Dev-only values, refused at start when DEBUG is off.
DEV_SECRET_KEY = "dev-insecure-secret-key-do-not-use-in-production-0123456789"  # noqa: S105
DEV_JWT_SECRET = "dev-jwt-secret-do-not-use-in-production-0123456789abcdef"  # noqa: S105
DEV_API_KEYS = {"dev": "dev-publisher-key"}
DEV_HOSTS = ["localhost", "127.0.0.1", "[::1]"]
DEV_ORIGIN_HOSTS = ("localhost", "127.0.0.1", "[::1]")

HMAC_ALGORITHMS = frozenset({"HS256", "HS384", "HS512"})
ASYMMETRIC_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
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


def normalize_origin(value: str) -> str | None:
    """``https://Example.com:443`` -> ``https://example.com:443``; None if not an origin."""
    try:
        parts = urlsplit(value.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        return None
    port = port or (443 if parts.scheme == "https" else 80)
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}:{port}"


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


@dataclass(frozen=True)
class RedisSettings:
    """Where shared state lives: plain URLs (the first also holds presence and
    rate limits), or a Sentinel-managed master."""

    urls: tuple[str, ...]
    sentinels: tuple[tuple[str, int], ...] = ()
    sentinel_master: str | None = None
    sentinel_kwargs: dict[str, Any] | None = None


def redis_settings(env: environ.Env) -> RedisSettings | None:
    sentinels_raw: str = env.str("REDIS_SENTINELS", default="")
    if sentinels_raw:
        master: str = env.str("REDIS_SENTINEL_MASTER", default="")
        if not master:
            raise ImproperlyConfigured(
                "REDIS_SENTINELS is set but REDIS_SENTINEL_MASTER is not: name the master "
                "set the sentinels monitor (e.g. mymaster)."
            )
        sentinels = []
        for item in sentinels_raw.split(","):
            host, sep, port = item.strip().rpartition(":")
            if not sep or not host or not port.isdigit():
                raise ImproperlyConfigured(
                    f"REDIS_SENTINELS entry {item!r} must be host:port (comma-separated)."
                )
            sentinels.append((host.strip("[]"), int(port)))
        password: str = env.str("REDIS_SENTINEL_PASSWORD", default="")
        return RedisSettings(
            urls=(),
            sentinels=tuple(sentinels),
            sentinel_master=master,
            sentinel_kwargs={"password": password} if password else None,
        )
    url: str = env.str("REDIS_URL", default="")
    if not url:
        return None
    hosts = tuple(h.strip() for h in url.split(",") if h.strip())
    for host in hosts:
        if urlsplit(host).scheme not in ("redis", "rediss", "unix"):
            raise ImproperlyConfigured(
                f"REDIS_URL entry {host!r} must start with redis://, rediss:// or unix://"
            )
    return RedisSettings(urls=hosts)


def channel_layer(env: environ.Env, redis: RedisSettings | None) -> dict[str, Any]:
    if redis is None:
        return {
            "BACKEND": "notifications.channel_layer.InMemoryNotifyLayer",
            # The in-memory layer drops over capacity; a large bound keeps
            # bursts in, the database covers anything that still drops.
            "CONFIG": {"capacity": 10_000, "expiry": 60},
        }
    # One connection kwargs dict per shard; several comma-separated URLs
    # shard groups by consistent hash, as channels-redis does.
    common = {"socket_connect_timeout": 3, "socket_keepalive": True, "health_check_interval": 10}
    shard_hosts: list[dict[str, Any]] = [{"address": h, **common} for h in redis.urls]
    if redis.sentinels:
        shard_hosts = [
            {
                "sentinels": list(redis.sentinels),
                "master_name": redis.sentinel_master,
                "sentinel_kwargs": redis.sentinel_kwargs,
                **common,
            }
        ]
    kind: str = env.str("NOTIFY_REDIS_LAYER", default="pubsub")
    if kind == "core":
        return {
            "BACKEND": "notifications.channel_layer.RedisCoreNotifyLayer",
            "CONFIG": {
                "hosts": shard_hosts,
                "prefix": env.str("NOTIFY_REDIS_PREFIX", default="notify"),
                # A socket's inbox: pushes beyond this are dropped (and
                # recovered from the database); expiry bounds a stale inbox.
                "capacity": env.int("NOTIFY_LAYER_CAPACITY", default=1000),
                "expiry": 30,
                # Groups outlive no socket by more than the longest token.
                "group_expiry": 86400,
            },
        }
    if kind != "pubsub":
        raise ImproperlyConfigured(f"NOTIFY_REDIS_LAYER must be pubsub or core, got {kind!r}.")
    return {
        "BACKEND": "notifications.channel_layer.RedisNotifyLayer",
        "CONFIG": {
            "hosts": shard_hosts,
            "prefix": env.str("NOTIFY_REDIS_PREFIX", default="notify"),
        },
    }


def check_single_process_layer(layer: dict[str, Any]) -> None:
    """Refuse the in-process layer when several workers would each have their own."""
    if "InMemory" not in layer["BACKEND"]:
        return
    workers = env_workers()
    if workers > 1:
        raise ImproperlyConfigured(
            f"The in-memory channel layer works in one process only, but {workers} workers "
            "are configured: set REDIS_URL so that processes share a channel layer, "
            "or run a single worker."
        )


def env_workers() -> int:
    """Workers asked of uvicorn/gunicorn: WEB_CONCURRENCY or the parent's --workers."""
    count = int(os.environ.get("WEB_CONCURRENCY", "1") or "1")
    argv = list(sys.argv)
    try:
        with open(f"/proc/{os.getppid()}/cmdline", "rb") as fh:
            argv += fh.read().decode(errors="replace").split("\0")
    except OSError:
        pass
    for i, arg in enumerate(argv):
        if arg in ("--workers", "-w") and i + 1 < len(argv) and argv[i + 1].isdigit():
            count = max(count, int(argv[i + 1]))
        elif arg.startswith("--workers="):
            value = arg.partition("=")[2]
            if value.isdigit():
                count = max(count, int(value))
    return count


def api_keys(env: environ.Env, *, debug: bool) -> dict[str, str]:
    """``name:secret,name2:secret2`` -> {name: secret}."""
    raw: str = env.str("NOTIFY_API_KEYS", default="")
    keys: dict[str, str] = {}
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            continue
        name, sep, secret = item.partition(":")
        if not sep or not name or not secret:
            raise ImproperlyConfigured(
                "NOTIFY_API_KEYS must be comma-separated name:secret pairs, "
                f"got an entry without both parts (name {name!r})."
            )
        if name in keys:
            raise ImproperlyConfigured(f"NOTIFY_API_KEYS names {name!r} twice.")
        keys[name] = secret
    if not keys and debug:
        return dict(DEV_API_KEYS)
    if not debug and any(secret == DEV_API_KEYS["dev"] for secret in keys.values()):
        raise ImproperlyConfigured(
            "NOTIFY_API_KEYS holds the dev publisher key while DEBUG is off: use a real secret."
        )
    return keys


@dataclass(frozen=True)
class JWTSettings:
    algorithms: tuple[str, ...]
    secret: str | None
    public_key: str | None
    audience: str | None
    issuer: str | None
    leeway: float


def jwt_settings(env: environ.Env, *, debug: bool) -> JWTSettings:
    algorithms = tuple(a.strip() for a in env.list("JWT_ALGORITHMS", default=["HS256"]))
    unknown = [a for a in algorithms if a not in HMAC_ALGORITHMS | ASYMMETRIC_ALGORITHMS]
    if unknown or not algorithms:
        raise ImproperlyConfigured(
            f"JWT_ALGORITHMS has {unknown or 'nothing'}: use e.g. HS256 or RS256 "
            "('none' is never allowed)."
        )
    secret: str | None = env.str("JWT_SECRET", default="") or None
    public_key: str | None = env.str("JWT_PUBLIC_KEY", default="", multiline=True) or None
    wants_hmac = any(a in HMAC_ALGORITHMS for a in algorithms)
    wants_asym = any(a in ASYMMETRIC_ALGORITHMS for a in algorithms)
    if wants_hmac and secret is None and public_key is None and debug:
        secret = DEV_JWT_SECRET
    if wants_hmac and secret is None:
        raise ImproperlyConfigured(
            f"JWT_ALGORITHMS allows {sorted(HMAC_ALGORITHMS & set(algorithms))} but JWT_SECRET "
            "is unset: set JWT_SECRET (or JWT_PUBLIC_KEY with JWT_ALGORITHMS=RS256)."
        )
    if wants_asym and public_key is None:
        raise ImproperlyConfigured(
            "JWT_ALGORITHMS allows an asymmetric algorithm but JWT_PUBLIC_KEY is unset: "
            "set it to the PEM public key of the token issuer."
        )
    if not debug and secret == DEV_JWT_SECRET:
        raise ImproperlyConfigured("JWT_SECRET is the dev value while DEBUG is off.")
    return JWTSettings(
        algorithms=algorithms,
        secret=secret if wants_hmac else None,
        public_key=public_key if wants_asym else None,
        audience=env.str("JWT_AUDIENCE", default="") or None,
        issuer=env.str("JWT_ISSUER", default="") or None,
        leeway=env.float("JWT_LEEWAY", default=0.0),
    )


def rate(value: str, name: str) -> tuple[float, float]:
    """``1000/s`` -> (tokens per second, burst); burst is twice the rate per second."""
    match = _RATE.match(value)
    if not match or float(match.group(1)) <= 0:
        raise ImproperlyConfigured(f"{name} must look like 1000/s or 60/m, got {value!r}.")
    per_second = float(match.group(1)) / _PER.get(match.group(2), 3600)
    return per_second, max(1.0, 2 * float(match.group(1)))


def logging_config(env: environ.Env, *, json_lines: bool) -> dict[str, Any]:
    level: str = env.str("LOG_LEVEL", default="INFO").upper()
    formatter = (
        {"()": "service.logs.JsonFormatter"}
        if json_lines
        else {"format": "%(levelname)s %(name)s: %(message)s"}
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"scrub": {"()": "service.logs.ScrubSecretsFilter"}},
        "formatters": {"json": formatter},
        "handlers": {
            "stdout": {
                "class": "logging.StreamHandler",
                "formatter": "json",
                "filters": ["scrub"],
            }
        },
        "root": {"handlers": ["stdout"], "level": level},
        "loggers": {
            "django": {"level": level},
            "channels_redis": {"level": "WARNING"},
        },
    }
