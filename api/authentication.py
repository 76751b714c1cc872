"""Credentials for the HTTP API: publisher keys and user tokens.

Publisher secrets are kept only as SHA-256 digests after start-up
(``settings.NOTIFY_API_KEYS`` maps a name to its ``PublisherKey`` entries)
and every comparison is constant-time: ``hmac.compare_digest`` runs once per
configured key, with no early exit, so neither the secret nor which key
matched leaks through timing. A name may hold several secrets at once
(rotation), and a key may be limited to some notification types.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from django.conf import settings
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from notifications.tokens import InvalidToken, verify_user_token
from service.config import PublisherKey, secret_digest


@dataclass(frozen=True)
class Publisher:
    name: str
    is_authenticated: bool = True
    # fnmatch patterns of the notification types this key may publish; () = any.
    types: tuple[str, ...] = ()

    def allows(self, notification_type: str) -> bool:
        return PublisherKey(self.name, b"", self.types).allows(notification_type)


@dataclass(frozen=True)
class User:
    user_id: str
    is_authenticated: bool = True


@lru_cache(maxsize=4)
def _flatten(keys: tuple[tuple[str, tuple[Any, ...]], ...]) -> tuple[PublisherKey, ...]:
    flat = tuple(entry for _, entries in keys for entry in entries)
    for entry in flat:
        # Settings hold only what start-up parsed (service.config.api_keys):
        # digests, never a raw secret.
        if not isinstance(entry, PublisherKey):
            raise TypeError(f"NOTIFY_API_KEYS holds {type(entry).__name__}, not PublisherKey")
    return flat


def publisher_keys() -> tuple[PublisherKey, ...]:
    configured: Mapping[str, Iterable[PublisherKey]] = settings.NOTIFY_API_KEYS
    return _flatten(tuple((name, tuple(keys)) for name, keys in sorted(configured.items())))


def publisher_for_secret(secret: str) -> Publisher | None:
    presented = secret_digest(secret)
    found: PublisherKey | None = None
    for key in publisher_keys():
        # Every key is compared, whether or not an earlier one matched.
        if hmac.compare_digest(presented, key.digest):
            found = key
    return Publisher(name=found.name, types=found.types) if found is not None else None


def bearer_credential(header: bytes) -> str | None:
    """The credential of an ``Authorization: Bearer ...`` header, or None."""
    scheme, _, credential = header.partition(b" ")
    if scheme.lower() != b"bearer" or not credential.strip():
        return None
    try:
        return credential.strip().decode("utf-8")
    except UnicodeDecodeError:
        return None


def presented_credential(header: bytes, what: str) -> str | None:
    """The Bearer credential; None when no Authorization header was sent.

    A header in another form (``Authorization: <key>``, ``Token <key>``, an
    empty Bearer) answers 401 saying how to send it, rather than DRF's
    "credentials were not provided" when something was provided.
    """
    if not header:
        return None
    credential = bearer_credential(header)
    if credential is None:
        raise exceptions.AuthenticationFailed(
            "The Authorization header must use the Bearer scheme: "
            f'"Authorization: Bearer <{what}>".'
        )
    return credential


def _bearer(request: Request, what: str) -> str | None:
    return presented_credential(authentication.get_authorization_header(request), what)


class PublisherKeyAuthentication(authentication.BaseAuthentication):
    def authenticate(self, request: Request) -> tuple[Publisher, None] | None:
        secret = _bearer(request, "publisher key")
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
        token = _bearer(request, "user token")
        if token is None:
            return None
        try:
            claims = verify_user_token(token)
        except InvalidToken as exc:
            raise exceptions.AuthenticationFailed("Invalid or expired user token.") from exc
        return User(user_id=claims.user_id), None

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="user"'
