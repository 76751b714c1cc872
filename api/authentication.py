"""Credentials for the HTTP API: publisher keys and user tokens.

Publisher secrets are kept only as SHA-256 digests after start-up and every
comparison is constant-time (``hmac.compare_digest`` over all keys, no early
exit), so neither the secret nor which key matched leaks through timing.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from functools import lru_cache

from django.conf import settings
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from notifications.tokens import InvalidToken, verify_user_token


@dataclass(frozen=True)
class Publisher:
    name: str
    is_authenticated: bool = True


@dataclass(frozen=True)
class User:
    user_id: str
    is_authenticated: bool = True


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).digest()


@lru_cache(maxsize=1)
def _publisher_digests(keys: tuple[tuple[str, str], ...]) -> tuple[tuple[str, bytes], ...]:
    return tuple((name, _digest(secret)) for name, secret in keys)


def publisher_for_secret(secret: str) -> Publisher | None:
    digests = _publisher_digests(tuple(sorted(settings.NOTIFY_API_KEYS.items())))
    presented = _digest(secret)
    found: str | None = None
    for name, digest in digests:
        if hmac.compare_digest(presented, digest):
            found = name
    return Publisher(name=found) if found is not None else None


def _bearer(request: Request) -> str | None:
    header = authentication.get_authorization_header(request)
    scheme, _, credential = header.partition(b" ")
    if scheme.lower() != b"bearer" or not credential.strip():
        return None
    try:
        return credential.strip().decode("utf-8")
    except UnicodeDecodeError:
        return None


class PublisherKeyAuthentication(authentication.BaseAuthentication):
    def authenticate(self, request: Request) -> tuple[Publisher, None] | None:
        secret = _bearer(request)
        if secret is None:
            return None
        publisher = publisher_for_secret(secret)
        if publisher is None:
            raise exceptions.AuthenticationFailed("Invalid publisher key.")
        return publisher, None

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="publisher"'


class UserTokenAuthentication(authentication.BaseAuthentication):
    def authenticate(self, request: Request) -> tuple[User, None] | None:
        token = _bearer(request)
        if token is None:
            return None
        try:
            claims = verify_user_token(token)
        except InvalidToken as exc:
            raise exceptions.AuthenticationFailed("Invalid or expired user token.") from exc
        return User(user_id=claims.user_id), None

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="user"'
