"""DRF authentication for the HTTP API: publisher keys and user tokens.

The credentials themselves are checked in the domain
(``notifications.credentials`` for publisher keys, ``notifications.tokens``
for user tokens); these classes only adapt them to DRF's request/response.
"""

from __future__ import annotations

from dataclasses import dataclass

from rest_framework import authentication, exceptions
from rest_framework.request import Request

from notifications.credentials import Publisher, bearer_credential, publisher_for_secret
from notifications.tokens import InvalidToken, verify_user_token


@dataclass(frozen=True)
class User:
    user_id: str
    is_authenticated: bool = True


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
