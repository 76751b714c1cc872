"""In-process HTTP requests to ``service.asgi.application``, the app uvicorn runs.

``AsgiClient`` speaks the subset of DRF's ``APIClient`` the API tests use
(``get``, ``post``, ``generic``, ``credentials``), but every request goes
through the ASGI application over httpx's ASGI transport: the publish
endpoint in front of Django, the group committer's writer thread and its
rate limit, exactly as in production. The application runs on an event loop
of its own thread, as under uvicorn, so that pushes scheduled after a commit
run to their end. Database tests that use it need ``transaction=True``: the
writer thread commits on its own connection.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator, Mapping
from typing import Any

import httpx


class AsgiResponse:
    """An httpx response that also answers ``response["Header"]`` and ``.data``."""

    def __init__(self, response: httpx.Response) -> None:
        self.raw = response
        self.status_code = response.status_code
        self.headers = response.headers
        self.content = response.content

    def json(self) -> Any:
        return self.raw.json()

    @property
    def data(self) -> Any:
        return self.raw.json()

    def __getitem__(self, name: str) -> str:
        return self.headers[name]

    def __contains__(self, name: str) -> bool:
        return name in self.headers

    def has_header(self, name: str) -> bool:
        return name in self.headers


class AsgiClient:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        from service.asgi import application

        self._loop = loop
        transport = httpx.ASGITransport(app=application)
        self._http = httpx.AsyncClient(transport=transport, base_url="http://testserver")
        self._headers: dict[str, str] = {}

    def credentials(self, HTTP_AUTHORIZATION: str | None = None) -> None:
        self._headers.pop("Authorization", None)
        if HTTP_AUTHORIZATION is not None:
            self._headers["Authorization"] = HTTP_AUTHORIZATION

    def generic(
        self,
        method: str,
        path: str,
        data: bytes | str = b"",
        content_type: str | None = None,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> AsgiResponse:
        sent = {**self._headers, **(headers or {})}
        if content_type is not None:
            sent["Content-Type"] = content_type
        body = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
        request = self._http.request(method, path, content=body, headers=sent, params=params)
        future = asyncio.run_coroutine_threadsafe(request, self._loop)
        return AsgiResponse(future.result(timeout=60))

    def get(
        self,
        path: str,
        data: Mapping[str, Any] | None = None,
        format: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> AsgiResponse:
        return self.generic("GET", path, headers=headers, params=data)

    def post(
        self,
        path: str,
        data: Any = None,
        format: str | None = None,
        content_type: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> AsgiResponse:
        return self._with_body("POST", path, data, format, content_type, headers)

    def put(
        self,
        path: str,
        data: Any = None,
        format: str | None = None,
        content_type: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> AsgiResponse:
        return self._with_body("PUT", path, data, format, content_type, headers)

    def delete(
        self,
        path: str,
        data: Any = None,
        format: str | None = None,
        content_type: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> AsgiResponse:
        if data is None:
            return self.generic("DELETE", path, b"", content_type, headers)
        return self._with_body("DELETE", path, data, format, content_type, headers)

    def _with_body(
        self,
        method: str,
        path: str,
        data: Any,
        format: str | None,
        content_type: str | None,
        headers: Mapping[str, str] | None,
    ) -> AsgiResponse:
        if isinstance(data, bytes | str):
            return self.generic(method, path, data, content_type, headers)
        if format == "json" or content_type == "application/json":
            raw = b"" if data is None else json.dumps(data).encode()
            return self.generic(method, path, raw, "application/json", headers)
        # As APIClient: a dict without format= goes as a form (multipart).
        form = "&".join(f"{k}={v}" for k, v in (data or {}).items())
        return self.generic(
            method, path, form, content_type or "multipart/form-data; boundary=x", headers
        )


def serving_loop() -> Iterator[asyncio.AbstractEventLoop]:
    """An event loop running in a thread of its own (as uvicorn's), for a test."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="asgi-loop", daemon=True)
    thread.start()
    try:
        yield loop
    finally:
        # What the ASGI shutdown does: publish groups committed, the loop's
        # own PostgreSQL connections closed (they cannot outlive the loop).
        from notifications import publish_loop

        asyncio.run_coroutine_threadsafe(publish_loop.close(), loop).result(timeout=60)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()
