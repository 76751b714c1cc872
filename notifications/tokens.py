"""User token verification (PyJWT), shared by the HTTP API and the WebSocket.

Algorithms are pinned by configuration: the token's header may only pick one
of ``JWT_ALGORITHMS``, and the key must belong to that algorithm's family, so
a public key can never be used as an HMAC secret (HS/RS confusion) and
``none`` is never accepted.

Key selection (rotation): a token with a ``kid`` header is checked against
that key only (``JWT_KEYS``, ``JWT_JWKS_FILE``, then ``JWT_JWKS_URL``); an
unknown ``kid`` is refused. A token without ``kid`` is checked against the
un-named keys, ``JWT_SECRET`` or ``JWT_PUBLIC_KEY`` by algorithm family.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import jwt
from django.conf import settings

HMAC_ALGORITHMS = frozenset({"HS256", "HS384", "HS512"})
ASYMMETRIC_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
MAX_TOKEN_LENGTH = 8192
MAX_USER_ID_LENGTH = 128
# A token naming an unknown kid may trigger a JWKS refetch at most this often.
JWKS_MISS_REFETCH_SECONDS = 30.0

_FAMILIES = {
    "HS": "hmac",
    "RS": "RSA",
    "PS": "RSA",
    "ES": "EC",
    "Ed": "OKP",
}


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


class InvalidToken(Exception):
    """The token is missing, malformed, wrongly signed, expired or not for us."""


@dataclass(frozen=True)
class UserClaims:
    user_id: str
    expires_at: float


def _config() -> JWTSettings:
    cfg: JWTSettings = settings.NOTIFY_JWT
    return cfg


def algorithm_family(algorithm: str) -> str:
    return _FAMILIES.get(algorithm[:2], "unknown")


class _RemoteKeys:
    """``JWT_JWKS_URL`` through PyJWT's caching ``PyJWKClient``.

    The set is cached for ``JWT_JWKS_REFRESH_MINUTES``; an unknown kid forces
    a refetch at most every ``JWKS_MISS_REFETCH_SECONDS`` (PyJWKClient's
    cooldown), so tokens with random kids cannot make this service hammer the
    issuer. Fetches are blocking (urllib): the socket and stream handshakes
    verify through ``verify_user_token_async``, which moves a verification
    that may fetch off the event loop; cached lookups do no I/O.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._client: jwt.PyJWKClient | None = None
        self._url: str | None = None

    def _client_for(self, cfg: JWTSettings) -> jwt.PyJWKClient:
        assert cfg.jwks_url is not None
        with self._lock:
            if self._client is None or self._url != cfg.jwks_url:
                self._client = jwt.PyJWKClient(
                    cfg.jwks_url,
                    cache_keys=False,
                    cache_jwk_set=True,
                    lifespan=max(1.0, cfg.jwks_refresh_seconds),
                    timeout=5,
                    cooldown_duration=JWKS_MISS_REFETCH_SECONDS,
                )
                self._url = cfg.jwks_url
            return self._client

    def cached(self, cfg: JWTSettings, kid: str) -> bool:
        """Whether the cached, unexpired key set names ``kid`` (no I/O)."""
        cache = self._client_for(cfg).jwk_set_cache
        jwk_set = cache.get() if cache is not None else None
        return jwk_set is not None and any(key.key_id == kid for key in jwk_set.keys)

    def find(self, cfg: JWTSettings, kid: str) -> NamedKey | None:
        try:
            jwk = self._client_for(cfg).get_signing_key(kid)
        except jwt.PyJWKClientError:
            return None  # unknown kid, or the issuer is unreachable
        except jwt.PyJWTError as exc:
            raise InvalidToken("JWKS unusable") from exc
        if jwk.key_type == "oct":
            return None  # never take shared secrets from the network
        alg = jwk._jwk_data.get("alg")
        return NamedKey(kid=kid, family=str(jwk.key_type), key=jwk.key, algorithm=alg)


remote_keys = _RemoteKeys()


def _key_for(cfg: JWTSettings, header: dict[str, Any], algorithm: str) -> Any:
    family = algorithm_family(algorithm)
    kid = header.get("kid")
    if kid is None:
        key = cfg.secret if family == "hmac" else cfg.public_key
        if key is None:
            raise InvalidToken("no key for algorithm")
        return key
    if not isinstance(kid, str) or not kid or len(kid) > 256:
        raise InvalidToken("malformed kid")
    named = cfg.named_keys.get(kid)
    if named is None and cfg.jwks_url is not None and family != "hmac":
        named = remote_keys.find(cfg, kid)
    if named is None:
        raise InvalidToken("unknown kid")
    if named.family != family:
        raise InvalidToken("key type does not match algorithm")
    if named.algorithm is not None and named.algorithm != algorithm:
        raise InvalidToken("key is pinned to another algorithm")
    return named.key


def verify_user_token(token: str) -> UserClaims:
    cfg = _config()
    if not token or len(token) > MAX_TOKEN_LENGTH:
        raise InvalidToken("token missing or too long")
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        raise InvalidToken("malformed token") from exc
    algorithm = header.get("alg")
    if not isinstance(algorithm, str) or algorithm not in cfg.algorithms:
        raise InvalidToken("algorithm not allowed")
    key = _key_for(cfg, header, algorithm)
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=[algorithm],
            audience=cfg.audience,
            issuer=cfg.issuer,
            leeway=cfg.leeway,
            options={
                "require": ["exp", "sub"],
                "verify_aud": cfg.audience is not None,
                "verify_iss": cfg.issuer is not None,
                "verify_nbf": True,
                "verify_iat": True,
            },
        )
    except jwt.PyJWTError as exc:
        raise InvalidToken(type(exc).__name__) from exc
    sub = claims.get("sub")
    if not isinstance(sub, str) or not 1 <= len(sub) <= MAX_USER_ID_LENGTH:
        raise InvalidToken("sub must be a string of 1..128 characters")
    if not storable_user_id(sub):
        raise InvalidToken("sub must be valid Unicode without NUL")
    exp = claims.get("exp")
    if not isinstance(exp, int | float) or isinstance(exp, bool):
        raise InvalidToken("exp must be a number")
    return UserClaims(user_id=sub, expires_at=float(exp))


def may_fetch_keys(token: str) -> bool:
    """Whether verifying ``token`` may fetch the issuer's JWKS (blocking I/O):
    ``JWT_JWKS_URL`` is set and the token names a kid that neither a configured
    key nor the cached key set holds."""
    cfg = _config()
    if cfg.jwks_url is None or not token or len(token) > MAX_TOKEN_LENGTH:
        return False
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        return False
    kid, algorithm = header.get("kid"), header.get("alg")
    if not isinstance(kid, str) or not isinstance(algorithm, str) or kid in cfg.named_keys:
        return False
    return algorithm_family(algorithm) != "hmac" and not remote_keys.cached(cfg, kid)


async def verify_user_token_async(token: str) -> UserClaims:
    """``verify_user_token`` for the event loop: in a worker thread when it may
    fetch the JWKS (so one slow issuer cannot stall every socket), inline else."""
    if may_fetch_keys(token):
        return await asyncio.to_thread(verify_user_token, token)
    return verify_user_token(token)


def storable_user_id(user_id: str) -> bool:
    """The rule recipients follow (api/serializers.py ``check_text``): no NUL,
    no lone surrogate, so every database can store and match it."""
    if "\x00" in user_id:
        return False
    try:
        user_id.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def mint_user_token(user_id: str, *, ttl_seconds: int = 3600) -> str:
    """For development and tests: a token the configured HMAC secret verifies.

    In production the host application mints tokens, never this service.
    """
    cfg = _config()
    algorithm = next((a for a in cfg.algorithms if a in HMAC_ALGORITHMS), None)
    if algorithm is None or cfg.secret is None:
        raise InvalidToken("minting needs JWT_SECRET and an HS* algorithm in JWT_ALGORITHMS")
    now = int(time.time())
    payload: dict[str, object] = {"sub": user_id, "iat": now, "exp": now + ttl_seconds}
    if cfg.audience:
        payload["aud"] = cfg.audience
    if cfg.issuer:
        payload["iss"] = cfg.issuer
    return jwt.encode(payload, cfg.secret, algorithm=algorithm)
