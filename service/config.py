"""Turn environment variables into validated settings values.

Each function reads a few variables, checks them, and raises
``ImproperlyConfigured`` with a message naming the variable to change.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import dj_database_url
import environ
import jwt
from django.core.exceptions import ImproperlyConfigured

# Dev-only values, refused at start when DEBUG is off.
DEV_SECRET_KEY = "dev-insecure-secret-key-do-not-use-in-production-0123456789"  # noqa: S105
DEV_JWT_SECRET = "dev-jwt-secret-do-not-use-in-production-0123456789abcdef"  # noqa: S105
DEV_API_KEY_NAME = "dev"
DEV_API_KEY = "dev-publisher-key"
DEV_API_KEYS = {DEV_API_KEY_NAME: DEV_API_KEY}  # the env form; settings hold only digests
DEV_HOSTS = ["localhost", "127.0.0.1", "[::1]"]
LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "[::1]", "::1"})
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


@dataclass(frozen=True)
class PublisherKey:
    """One publisher secret, kept only as its SHA-256 digest after start-up.

    ``types`` are fnmatch patterns (``order.*``) limiting the notification
    types the key may publish; empty means any type.
    """

    name: str
    digest: bytes
    types: tuple[str, ...] = ()

    def allows(self, notification_type: str) -> bool:
        return not self.types or any(fnmatchcase(notification_type, p) for p in self.types)


def secret_digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).digest()


_TYPE_PATTERN = re.compile(r"\A[A-Za-z0-9_.:\-*?\[\]!]{1,100}\Z")


def api_keys(env: environ.Env, *, debug: bool) -> dict[str, tuple[PublisherKey, ...]]:
    """``name:secret[:type1|type2.*],...`` -> {name: (PublisherKey, ...)}.

    A name may appear several times (rotation: each of its secrets is valid);
    the same secret twice is refused. Only digests leave this function.
    """
    raw: str = env.str("NOTIFY_API_KEYS", default="")
    keys: dict[str, list[PublisherKey]] = {}
    seen: set[bytes] = set()
    dev_digest = secret_digest(DEV_API_KEY)
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            continue
        name, _, rest = item.partition(":")
        secret, scoped, types_raw = rest.partition(":")
        if not name or not secret:
            raise ImproperlyConfigured(
                "NOTIFY_API_KEYS must be comma-separated name:secret pairs (optionally "
                f"name:secret:type1|type2.*), got an entry without both parts (name {name!r})."
            )
        types: tuple[str, ...] = ()
        if scoped:
            types = tuple(t.strip() for t in types_raw.split("|"))
            bad = [t for t in types if not _TYPE_PATTERN.match(t)]
            if bad or not types:
                raise ImproperlyConfigured(
                    f"NOTIFY_API_KEYS entry for {name!r} has bad type patterns "
                    f"{bad or types_raw!r}: "
                    "use name:secret:type1|prefix.* (letters, digits, _.:- and glob * ? [])."
                )
        digest = secret_digest(secret)
        if digest in seen:
            raise ImproperlyConfigured(
                f"NOTIFY_API_KEYS lists the same secret twice (name {name!r}): "
                "every secret must be distinct, also when rotating one name."
            )
        seen.add(digest)
        if not debug and digest == dev_digest:
            raise ImproperlyConfigured(
                "NOTIFY_API_KEYS holds the dev publisher key while DEBUG is off: use a real secret."
            )
        keys.setdefault(name, []).append(PublisherKey(name=name, digest=digest, types=types))
    if not keys and debug:
        return {DEV_API_KEY_NAME: (PublisherKey(DEV_API_KEY_NAME, dev_digest),)}
    return {name: tuple(entries) for name, entries in keys.items()}


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


@dataclass(frozen=True)
class NamedKey:
    """A verification key picked by a token's ``kid``.

    ``family`` is ``hmac``, ``RSA``, ``EC`` or ``OKP``; ``algorithm`` is the
    JWK's ``alg`` when it names one (the token must then use exactly it).
    """

    kid: str
    family: str
    key: Any
    algorithm: str | None = None


@dataclass(frozen=True)
class JWTSettings:
    algorithms: tuple[str, ...]
    secret: str | None
    public_key: str | None
    audience: str | None
    issuer: str | None
    leeway: float
    # kid -> key, from JWT_KEYS (HMAC) and JWT_JWKS_FILE (asymmetric or oct).
    named_keys: dict[str, NamedKey] = field(default_factory=dict)
    jwks_url: str | None = None
    jwks_refresh_seconds: float = 300.0


_KID = re.compile(r"\A[A-Za-z0-9._~+/=-]{1,128}\Z")


def _looks_asymmetric(secret: str) -> bool:
    text = secret.strip()
    return text.startswith("-----BEGIN") or text.startswith("ssh-") or text.startswith("{")


def _hmac_keys(env: environ.Env) -> dict[str, NamedKey]:
    raw: str = env.str("JWT_KEYS", default="").strip()
    if not raw:
        return {}
    pairs: list[tuple[Any, Any]] = []
    if raw.startswith("{"):
        try:
            loaded = json.loads(raw)
        except ValueError as exc:
            raise ImproperlyConfigured(f"JWT_KEYS is not valid JSON: {exc}") from exc
        if not isinstance(loaded, dict):
            raise ImproperlyConfigured('JWT_KEYS as JSON must be an object {"kid": "secret"}.')
        pairs = list(loaded.items())
    else:
        for item in (part.strip() for part in raw.split(",")):
            if not item:
                continue
            kid, sep, secret = item.partition(":")
            if not sep:
                raise ImproperlyConfigured(
                    "JWT_KEYS must be kid:secret pairs (comma-separated) or a JSON object, "
                    f"got an entry without ':' (kid {kid.strip()!r})."
                )
            pairs.append((kid.strip(), secret))
    keys: dict[str, NamedKey] = {}
    for kid, secret in pairs:
        if not _KID.match(kid):
            raise ImproperlyConfigured(
                f"JWT_KEYS kid {kid!r} must be 1..128 characters of [A-Za-z0-9._~+/=-]."
            )
        if not isinstance(secret, str) or not secret:
            raise ImproperlyConfigured(f"JWT_KEYS kid {kid!r} has no secret.")
        if _looks_asymmetric(secret):
            raise ImproperlyConfigured(
                f"JWT_KEYS kid {kid!r} looks like a public key: JWT_KEYS holds HMAC secrets only; "
                "put public keys in JWT_JWKS_FILE."
            )
        if kid in keys:
            raise ImproperlyConfigured(f"JWT_KEYS names kid {kid!r} twice.")
        keys[kid] = NamedKey(kid=kid, family="hmac", key=secret)
    return keys


def _jwks_file_keys(env: environ.Env) -> dict[str, NamedKey]:
    path: str = env.str("JWT_JWKS_FILE", default="")
    alias: str = env.str("JWT_PUBLIC_KEYS_FILE", default="")
    if path and alias and path != alias:
        raise ImproperlyConfigured("Set JWT_JWKS_FILE or JWT_PUBLIC_KEYS_FILE, not both.")
    path = path or alias
    if not path:
        return {}
    try:
        with open(path, encoding="utf-8") as fh:
            document = json.load(fh)
    except (OSError, ValueError) as exc:
        raise ImproperlyConfigured(f"JWT_JWKS_FILE {path!r} is not a readable JWKS: {exc}") from exc
    entries = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(entries, list) or not entries:
        raise ImproperlyConfigured(f'JWT_JWKS_FILE {path!r} must be {{"keys": [<JWK>, ...]}}.')
    keys: dict[str, NamedKey] = {}
    for entry in entries:
        kid = entry.get("kid") if isinstance(entry, dict) else None
        if not isinstance(kid, str) or not kid:
            raise ImproperlyConfigured(f"JWT_JWKS_FILE {path!r}: every key needs a 'kid'.")
        if entry.get("use") not in (None, "sig"):
            continue
        if "d" in entry or "p" in entry:
            raise ImproperlyConfigured(
                f"JWT_JWKS_FILE {path!r}: key {kid!r} is a private key; publish public keys only."
            )
        try:
            jwk = jwt.PyJWK.from_dict(entry)
        except jwt.PyJWTError as exc:
            raise ImproperlyConfigured(
                f"JWT_JWKS_FILE {path!r}: key {kid!r} is not usable: {exc}"
            ) from exc
        if kid in keys:
            raise ImproperlyConfigured(f"JWT_JWKS_FILE {path!r} names kid {kid!r} twice.")
        family = "hmac" if jwk.key_type == "oct" else str(jwk.key_type)
        keys[kid] = NamedKey(kid=kid, family=family, key=jwk.key, algorithm=entry.get("alg"))
    return keys


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
    if secret is not None and _looks_asymmetric(secret):
        raise ImproperlyConfigured(
            "JWT_SECRET looks like a public key: an RSA/EC key is never used as an HMAC secret; "
            "set JWT_PUBLIC_KEY (and JWT_ALGORITHMS=RS256) instead."
        )
    named = _hmac_keys(env)
    for kid, key in _jwks_file_keys(env).items():
        if kid in named:
            raise ImproperlyConfigured(f"kid {kid!r} is in both JWT_KEYS and JWT_JWKS_FILE.")
        named[kid] = key
    jwks_url: str | None = env.str("JWT_JWKS_URL", default="") or None
    if jwks_url is not None:
        scheme = urlsplit(jwks_url).scheme
        if scheme != "https" and not (debug and scheme == "http"):
            raise ImproperlyConfigured(f"JWT_JWKS_URL must be an https:// URL, got {jwks_url!r}.")
    refresh = env.float("JWT_JWKS_REFRESH_MINUTES", default=5.0)
    if refresh <= 0:
        raise ImproperlyConfigured("JWT_JWKS_REFRESH_MINUTES must be positive.")
    leeway = env.float("JWT_LEEWAY", default=0.0)
    if leeway < 0:
        raise ImproperlyConfigured("JWT_LEEWAY must be zero or a positive number of seconds.")
    named_hmac = any(k.family == "hmac" for k in named.values())
    named_asym = any(k.family != "hmac" for k in named.values()) or jwks_url is not None
    wants_hmac = any(a in HMAC_ALGORITHMS for a in algorithms)
    wants_asym = any(a in ASYMMETRIC_ALGORITHMS for a in algorithms)
    if wants_hmac and secret is None and public_key is None and not named and debug:
        secret = DEV_JWT_SECRET
    if wants_hmac and secret is None and not named_hmac:
        raise ImproperlyConfigured(
            f"JWT_ALGORITHMS allows {sorted(HMAC_ALGORITHMS & set(algorithms))} but JWT_SECRET "
            "is unset: set JWT_SECRET or JWT_KEYS (or JWT_PUBLIC_KEY with JWT_ALGORITHMS=RS256)."
        )
    if wants_asym and public_key is None and not named_asym:
        raise ImproperlyConfigured(
            "JWT_ALGORITHMS allows an asymmetric algorithm but JWT_PUBLIC_KEY is unset: "
            "set it to the PEM public key of the token issuer (or JWT_JWKS_FILE / JWT_JWKS_URL)."
        )
    if named_hmac and not wants_hmac:
        raise ImproperlyConfigured(
            "JWT_KEYS (or an oct key in JWT_JWKS_FILE) holds HMAC secrets but JWT_ALGORITHMS "
            "allows no HS algorithm: add HS256 to JWT_ALGORITHMS or remove the HMAC keys."
        )
    if not debug and secret == DEV_JWT_SECRET:
        raise ImproperlyConfigured("JWT_SECRET is the dev value while DEBUG is off.")
    if not debug and any(k.key == DEV_JWT_SECRET for k in named.values()):
        raise ImproperlyConfigured("JWT_KEYS holds the dev JWT secret while DEBUG is off.")
    return JWTSettings(
        algorithms=algorithms,
        secret=secret if wants_hmac else None,
        public_key=public_key if wants_asym else None,
        audience=env.str("JWT_AUDIENCE", default="") or None,
        issuer=env.str("JWT_ISSUER", default="") or None,
        leeway=leeway,
        named_keys=named,
        jwks_url=jwks_url if wants_asym else None,
        jwks_refresh_seconds=refresh * 60,
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
        },
    }
