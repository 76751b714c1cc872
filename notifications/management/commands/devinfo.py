"""What a new user needs after `make run`: a publisher key and how to get a token."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from notifications.credentials import DEV_API_KEY, publisher_for_secret


class Command(BaseCommand):
    help = "Print the dev publisher key and how to mint a user token."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", default="8000")

    def handle(self, *args: Any, **options: Any) -> None:
        port = options["port"]
        # Settings hold only digests: the one secret ever printed is the
        # well-known dev key, and only when it is what is configured.
        dev = publisher_for_secret(DEV_API_KEY) if settings.DEBUG else None
        if dev is not None:
            name, secret = dev.name, DEV_API_KEY
        elif settings.NOTIFY_API_KEYS:
            name, secret = ",".join(sorted(settings.NOTIFY_API_KEYS)), "(from NOTIFY_API_KEYS)"
        else:
            name, secret = "-", "(none configured)"
        mode = "dev mode (DEBUG on)" if settings.DEBUG else "production mode"
        host = options["host"]
        base = f"http://{host}:{port}"
        rows = [(f"publisher key ({name})", secret)]
        if settings.NOTIFY_DEMO_ENABLED:
            rows.insert(0, ("open first", f"{base}/demo"))
        rows += [
            ("a user token", ".venv/bin/python manage.py issue_token alice"),
            ("API docs", f"{base}/api/docs"),
            ("socket", f"ws://{host}:{port}/ws/notifications?token=<token>"),
        ]
        self.stdout.write(banner(f"Notification service, {mode}, on {base}", rows))


def banner(title: str, rows: list[tuple[str, str]]) -> str:
    """The title, then one ``label:  value`` line per row, values in one column."""
    width = max(len(label) for label, _ in rows) + 1
    lines = [f"  {label + ':':<{width}}  {value}" for label, value in rows]
    return "\n".join(["", title, *lines, ""])
