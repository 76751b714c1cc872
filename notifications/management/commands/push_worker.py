"""Run the Web Push worker alone (a Deployment that scales apart from the
service; set NOTIFY_PUSH_WORKER_IN_PROCESS=false on the service then).

Needs Redis (the ``auto`` rule reads presence across every process) and
PostgreSQL for more than one worker. SIGTERM stops claiming, lets sends in
flight finish and hands unsent rows back to the outbox.
"""

from __future__ import annotations

import asyncio
import signal
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from prometheus_client import start_http_server

from notifications import redis_clients
from notifications.push import runtime


class Command(BaseCommand):
    help = "Send owed Web Push messages (the outbox) until SIGTERM."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--metrics-port", type=int, default=9100, help="Prometheus /metrics (0: none)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if settings.NOTIFY_PUSH is None:
            raise CommandError("Web Push is off: set VAPID_PRIVATE_KEY and VAPID_SUBJECT.")
        if redis_clients.configured() is None:
            raise CommandError(
                "push_worker needs REDIS_URL: the auto rule reads who is connected from the "
                "service processes' presence in Redis."
            )
        if options["metrics_port"]:
            start_http_server(options["metrics_port"])
        asyncio.run(self._run())

    async def _run(self) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await runtime.start()
        self.stdout.write("push worker running", ending="\n")
        self.stdout.flush()
        await stop.wait()
        await runtime.stop(grace=settings.NOTIFY_DRAIN_SECONDS)
