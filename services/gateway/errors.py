"""One exception for every refusal; one handler renders it. Endpoints never build error responses."""

from __future__ import annotations

import errno
from collections.abc import Mapping
from typing import Any

import orjson
from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from forgeline.bus.port import DiskFull
from forgeline.telemetry.metrics import GATEWAY_REJECTIONS, LabelledChildren


class ApiError(Exception):
    """A refusal with the exact body its API dialect prescribes.

    ``reason`` is a short fixed label for metrics (never user input).
    """

    def __init__(
        self,
        status: int,
        body: Mapping[str, Any],
        reason: str,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status} {reason}")
        self.status = status
        self.body = body
        self.reason = reason
        self.headers = dict(headers or {})


_JSON_TYPE = (b"content-type", b"application/json")


class JSONResponse(Response):
    """JSON rendered once (orjson) with its raw headers built directly: Starlette's
    ``init_headers`` and the generic ``__call__`` showed in the per-request profile."""

    media_type = "application/json"

    def __init__(
        self,
        content: Any = None,
        status_code: int = 200,
        headers: Mapping[str, str] | None = None,
        media_type: str | None = None,
        background: BackgroundTask | None = None,
    ) -> None:
        self.status_code = status_code
        self.background = background
        self.body = body = self.render(content)
        length = (b"content-length", str(len(body)).encode())
        content_type = _JSON_TYPE
        if media_type is not None:
            self.media_type = media_type
            content_type = (b"content-type", media_type.encode("latin-1"))
        if not headers:
            self.raw_headers = [length, content_type]
            return
        raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
        names = {name for name, _ in raw}
        if b"content-length" not in names:
            raw.append(length)
        if b"content-type" not in names:
            raw.append(content_type)
        self.raw_headers = raw

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        await send({"type": "http.response.body", "body": self.body})
        if self.background is not None:
            await self.background()


# Refusals by (route, reason), each child looked up once (both are fixed labels).
_REJECTIONS = LabelledChildren(GATEWAY_REJECTIONS)


def api_error_response(route: str, exc: ApiError) -> JSONResponse:
    """The refusal's own body and headers; counted by route and reason."""
    _REJECTIONS.get(route, exc.reason).inc()
    return JSONResponse(exc.body, status_code=exc.status, headers=exc.headers)


def disk_full_response(route: str, exc: OSError) -> JSONResponse | None:
    """A full disk (an upload to the local blob store, say) is the server's temporary state,
    not a bug: 503 with Retry-After, like an append refused below the free-space threshold.
    None for any other OSError (a bug: 500)."""
    if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
        return None
    _REJECTIONS.get(route, "disk_full").inc()
    body = {"error": "Service Unavailable: the server is low on disk space", "retry_after": DiskFull.retry_after_s}
    return JSONResponse(body, status_code=503, headers={"Retry-After": str(DiskFull.retry_after_s)})


def unexpected_response() -> JSONResponse:
    # A bug: answer JSON, never an HTML page; the traceback goes to the log.
    return JSONResponse({"error": "Internal Server Error"}, status_code=500)


async def render_api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return api_error_response(request.scope.get("forgeline.route", "unmatched"), exc)


async def render_unexpected(request: Request, exc: Exception) -> Response:
    return unexpected_response()


async def render_os_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, OSError)
    response = disk_full_response(request.scope.get("forgeline.route", "unmatched"), exc)
    if response is None:
        raise exc
    return response


def http_exception_response(exc: HTTPException) -> JSONResponse:
    # Starlette's own 404/405 answers, as JSON like every other refusal.
    return JSONResponse({"error": exc.detail}, status_code=exc.status_code, headers=exc.headers)


async def render_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return http_exception_response(exc)
