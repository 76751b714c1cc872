"""Mint a user token with the configured HMAC secret (development and tests)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from notifications.tokens import MAX_USER_ID_LENGTH, InvalidToken, mint_user_token


class Command(BaseCommand):
    help = "Print a JWT for USER, signed with JWT_SECRET (the host app does this in production)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("user", help="the user id (the token's sub)")
        parser.add_argument("--ttl", type=int, default=3600, help="seconds until exp")

    def handle(self, *args: Any, **options: Any) -> None:
        user: str = options["user"]
        ttl: int = options["ttl"]
        if not 1 <= len(user) <= MAX_USER_ID_LENGTH:
            raise CommandError("user must be 1..128 characters")
        # A token that is expired when printed would only fail later, silently.
        if ttl <= 0:
            raise CommandError(f"--ttl must be a positive number of seconds, got {ttl}")
        try:
            self.stdout.write(mint_user_token(user, ttl_seconds=ttl))
        except InvalidToken as exc:
            raise CommandError(str(exc)) from exc
