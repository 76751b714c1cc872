"""Build PostgreSQL's compact recipient table beside the live one, before
the deploy that runs migration 0006 (notifications/recipient_switch.py,
docs/migrations.md "0006"). Resumable: run it again after an interruption."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection

from notifications import recipient_layout, recipient_switch


class Command(BaseCommand):
    help = "Fill the compact recipient table beside the live one (before migration 0006)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--batch-size", type=int, default=recipient_switch.BATCH)
        parser.add_argument(
            "--abandon",
            action="store_true",
            help="drop the new table and the triggers instead (the old table stays)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["batch_size"] < 1:
            raise CommandError("--batch-size must be at least 1")
        if connection.vendor != "postgresql":
            raise CommandError("PostgreSQL only: SQLite keeps its recipient table")
        with connection.cursor() as cursor:
            if recipient_layout.is_compact(cursor):
                self.stdout.write("the recipient table is compact already (0006 applied)")
                return
        if options["abandon"]:
            recipient_switch.abandon(connection)
            self.stdout.write("abandoned: the new table and the triggers are gone")
            return
        mark = recipient_switch.prepare(connection)
        self.stdout.write(f"new table and triggers in place; copying old ids up to {mark}")
        copied = recipient_switch.backfill(
            connection,
            batch=options["batch_size"],
            progress=lambda part, done, top: self.stdout.write(f"{part}: through id {done}/{top}"),
        )
        self.stdout.write(f"done: {copied} rows copied; `migrate` now swaps the tables")
