"""Every error of the HTTP API becomes ``{"detail": ...}`` (or DRF field errors) here, once.

APIException (DRF)
 ├── PayloadTooLarge          413
 ├── UnsupportedMediaType     415 (DRF)
 ├── ... DRF's own            400/401/404/405
Domain errors (notifications.errors) and storage errors are mapped below:
 NotificationNotFound 404, IdempotencyConflict 422, IdempotencyInFlight 409,
 RateLimited 429 + Retry-After, database unreachable 503 + Retry-After.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from django.db import DatabaseError, InterfaceError, OperationalError
from rest_framework import status
from rest_framework.exceptions import APIException
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from notifications import errors
from notifications.metrics import RATE_LIMITED

logger = logging.getLogger(__name__)

STORAGE_RETRY_AFTER = 2


class PayloadTooLarge(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "Request body is too large."
    default_code = "payload_too_large"


def _detail(message: str, code: int, headers: dict[str, str] | None = None) -> Response:
    return Response({"detail": message}, status=code, headers=headers)


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, errors.NotificationNotFound):
        return _detail(str(exc), status.HTTP_404_NOT_FOUND)
    if isinstance(exc, errors.IdempotencyConflict):
        return _detail(str(exc), status.HTTP_422_UNPROCESSABLE_ENTITY)
    if isinstance(exc, errors.IdempotencyInFlight):
        return _detail(str(exc), status.HTTP_409_CONFLICT)
    if isinstance(exc, errors.RateLimited):
        RATE_LIMITED.labels(scope="publisher").inc()
        retry = str(max(1, math.ceil(exc.retry_after)))
        return _detail(str(exc), status.HTTP_429_TOO_MANY_REQUESTS, {"Retry-After": retry})
    if isinstance(exc, OperationalError | InterfaceError) or (
        isinstance(exc, DatabaseError) and "connection" in str(exc).lower()
    ):
        logger.warning("storage unreachable: %s", type(exc).__name__)
        return _detail(
            "Storage is unreachable; nothing was stored. Retry later.",
            status.HTTP_503_SERVICE_UNAVAILABLE,
            {"Retry-After": str(STORAGE_RETRY_AFTER)},
        )
    return drf_exception_handler(exc, context)
