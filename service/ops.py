"""Operations endpoints: liveness, readiness, metrics. Async: no thread hop."""

from __future__ import annotations

import logging
import os

from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    generate_latest,
    multiprocess,
)

from notifications.db import off_loop
from notifications.delivery import layer_health
from notifications.metrics import READY
from notifications.runtime import state

logger = logging.getLogger(__name__)


async def healthz(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"status": "ok"})


def _database_ok() -> str:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
        return "ok"
    except Exception as exc:
        return f"error: {type(exc).__name__}: {exc}"[:300]
    finally:
        connection.close()


async def readyz(request: HttpRequest) -> HttpResponse:
    database = await off_loop(_database_ok)()
    try:
        problem = await layer_health()
    except Exception as exc:
        problem = f"{type(exc).__name__}: {exc}"[:300]
    layer = "ok" if problem is None else f"error: {problem}"
    body = {"database": database, "channel_layer": layer, "shutting_down": state.shutting_down}
    ready = database == "ok" and layer == "ok" and not state.shutting_down
    response = JsonResponse(body, status=200 if ready else 503)
    READY.set(1 if ready else 0)
    if not ready:
        # A 503 here is an expected state (draining, an outage), not a server
        # error: one WARNING line instead of Django's ERROR for every probe.
        logger.warning("not ready: %s", body)
        response._has_been_logged = True  # type: ignore[attr-defined]
    return response


async def metrics(request: HttpRequest) -> HttpResponse:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        output = generate_latest(registry)
    else:
        output = generate_latest(REGISTRY)
    return HttpResponse(output, content_type=CONTENT_TYPE_LATEST)
