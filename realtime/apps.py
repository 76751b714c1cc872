from __future__ import annotations

from django.apps import AppConfig


class RealtimeConfig(AppConfig):
    name = "realtime"

    def ready(self) -> None:
        from corsheaders.signals import check_request_enabled

        from realtime import cors

        # One origin rule for the sockets, the stream and Django's routes.
        check_request_enabled.connect(cors.django_check, dispatch_uid="realtime.cors")
