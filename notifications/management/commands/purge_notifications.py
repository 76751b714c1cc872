"""Delete notifications older than NOTIFY_RETENTION_DAYS, in batches
(CronJob-safe), then compact the closed days' indexes (PostgreSQL)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from notifications.services import notifications_compact, notifications_purge


class Command(BaseCommand):
    help = "Purge notifications past the retention window, in small transactions."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--days", type=int, default=None, help="override the retention")
        parser.add_argument("--batch-size", type=int, default=5000)

    def handle(self, *args: Any, **options: Any) -> None:
        days = options["days"] if options["days"] is not None else settings.NOTIFY_RETENTION_DAYS
        deleted = notifications_purge(older_than_days=days, batch_size=options["batch_size"])
        self.stdout.write(f"purged {deleted} notifications older than {days} days")
        compacted = notifications_compact()
        self.stdout.write(f"compacted the indexes of {len(compacted)} closed day partitions")
