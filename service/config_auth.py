"""Credentials from the environment: publisher keys and user-token verification.

Each function reads a few variables, checks them, and raises
``ImproperlyConfigured`` with a message naming the variable to change. Only
digests of publisher secrets leave ``api_keys``.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import urlsplit

import environ
import jwt
from django.core.exceptions import ImproperlyConfigured

from notifications.credentials import DEV_API_KEY, DEV_API_KEY_NAME, PublisherKey, secret_digest
from notifications.tokens import ASYMMETRIC_ALGORITHMS, HMAC_ALGORITHMS, JWTSettings, NamedKey

# Dev-only value, refused at start when DEBUG is off.
DEV_JWT_SECRET = "dev-jwt-secret-do-not-use-in-production-0123456789abcdef"  # noqa: S105


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
