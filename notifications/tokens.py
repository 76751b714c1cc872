"""User token verification (PyJWT), shared by the HTTP API and the WebSocket.

Algorithms are pinned by configuration: the token's header may only pick one
of ``JWT_ALGORITHMS``, and the key is chosen by the algorithm's family, so a
public key can never be used as an HMAC secret.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import jwt
from django.conf import settings

from service.config import HMAC_ALGORITHMS, JWTSettings

MAX_TOKEN_LENGTH = 8192
MAX_USER_ID_LENGTH = 128


class InvalidToken(Exception):
    """The token is missing, malformed, wrongly signed, expired or not for us."""


@dataclass(frozen=True)
class UserClaims:
    user_id: str
    expires_at: float


def _config() -> JWTSettings:
    cfg: JWTSettings = settings.NOTIFY_JWT
    return cfg


def verify_user_token(token: str) -> UserClaims:
    cfg = _config()
    if not token or len(token) > MAX_TOKEN_LENGTH:
        raise InvalidToken("token missing or too long")
    try:
        algorithm = jwt.get_unverified_header(token).get("alg")
    except jwt.PyJWTError as exc:
        raise InvalidToken("malformed token") from exc
    if algorithm not in cfg.algorithms:
        raise InvalidToken("algorithm not allowed")
    key = cfg.secret if algorithm in HMAC_ALGORITHMS else cfg.public_key
    if key is None:
        raise InvalidToken("no key for algorithm")
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
            },
        )
    except jwt.PyJWTError as exc:
        raise InvalidToken(type(exc).__name__) from exc
    sub = claims.get("sub")
    if not isinstance(sub, str) or not 1 <= len(sub) <= MAX_USER_ID_LENGTH:
        raise InvalidToken("sub must be a string of 1..128 characters")
    exp = claims.get("exp")
    if not isinstance(exp, int | float) or isinstance(exp, bool):
        raise InvalidToken("exp must be a number")
    return UserClaims(user_id=sub, expires_at=float(exp))


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
