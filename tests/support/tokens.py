"""User tokens minted as a host application mints them: a JWT signed with
PyJWT (HS256 with the service's ``JWT_SECRET`` unless told otherwise)."""

from __future__ import annotations

import dataclasses
import time
from typing import TYPE_CHECKING, Any

import jwt

if TYPE_CHECKING:  # the live suites' helpers import this without Django set up
    from notifications.tokens import JWTSettings


def user_token(
    secret: str,
    sub: Any = "alice",
    *,
    exp_in: float | None = 3600,
    algorithm: str = "HS256",
    **claims: Any,
) -> str:
    """``iat`` now, ``sub`` (None: left out), ``exp`` ``exp_in`` s from now
    (None: left out), then ``claims``, which may replace any of them (a test
    sets a claim to the value it checks)."""
    now = int(time.time())
    payload: dict[str, Any] = {"iat": now}
    if sub is not None:
        payload["sub"] = sub
    if exp_in is not None:
        payload["exp"] = now + int(exp_in)
    payload.update(claims)
    return jwt.encode(payload, secret, algorithm=algorithm)


def hs256_only(current: JWTSettings, secret: str) -> JWTSettings:
    """``settings.NOTIFY_JWT`` accepting only HS256 tokens signed with
    ``secret``: no public key, audience, issuer or leeway to meet."""
    return dataclasses.replace(
        current,
        algorithms=("HS256",),
        secret=secret,
        public_key=None,
        audience=None,
        issuer=None,
        leeway=0.0,
    )
