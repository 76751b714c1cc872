"""``/static/``: Django's static files handler, hardened.

Django's ``ASGIStaticFilesHandler`` sits outside the middleware chain, so its
answers carried none of the security headers, and a path that escapes the
static root (``/static/..%2f..%2fetc%2fpasswd``) let ``SuspiciousFileOperation``
out as a 500 with a traceback, although the file was refused.
"""

from __future__ import annotations

import logging

from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler
from django.core.exceptions import SuspiciousOperation
from django.http import HttpRequest, HttpResponseBase, JsonResponse

from service.middleware import security_headers

logger = logging.getLogger(__name__)


class StaticFiles(ASGIStaticFilesHandler):
    async def get_response_async(self, request: HttpRequest) -> HttpResponseBase:
        try:
            response: HttpResponseBase = await super().get_response_async(request)
        except SuspiciousOperation:
            logger.warning("static path refused (outside the static root)")
            response = JsonResponse({"detail": "Not found."}, status=404)
        for name, value in security_headers(request.path).items():
            if name not in response:
                response[name] = value
        return response
