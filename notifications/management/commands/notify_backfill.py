"""Copy legacy notification rows into the event + recipient tables, in
committed batches, resumable (docs/migrations.md)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection

from notifications.legacy_copy import copy_legacy, legacy_table_exists, resume_point


class Command(BaseCommand):
    help = "Copy rows of the legacy notify_notification table (before migration 0004)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--after-id",
            type=int,
            default=None,
            help="legacy id to start after (default: just below the last one copied)",
        )
        parser.add_argument("--batch-size", type=int, default=10_000)

    def handle(self, *args: Any, **options: Any) -> None:
        if options["batch_size"] < 1:
            raise CommandError("--batch-size must be at least 1")
        if not legacy_table_exists(connection):
            self.stdout.write("no legacy table: nothing to copy (migration 0004 is applied)")
            return
        start = options["after_id"]
        if start is None:
            start = resume_point(connection)
        last = copy_legacy(
            connection,
            after_id=start,
            batch_size=options["batch_size"],
            progress=lambda done, top: self.stdout.write(f"copied through legacy id {done}/{top}"),
        )
        self.stdout.write(f"done: copied legacy ids {start + 1}..{last}")
