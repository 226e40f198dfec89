"""One exception for every refusal; one handler renders it. Endpoints never build error responses."""

from __future__ import annotations

import errno
from collections.abc import Mapping
from typing import Any

import orjson
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from forgeline.bus.port import DiskFull
from forgeline.telemetry.metrics import GATEWAY_REJECTIONS


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


class JSONResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


async def render_api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    route = request.scope.get("forgeline.route", "unmatched")
    GATEWAY_REJECTIONS.labels(route=route, reason=exc.reason).inc()
    return JSONResponse(exc.body, status_code=exc.status, headers=exc.headers)


async def render_unexpected(request: Request, exc: Exception) -> Response:
    # A bug: answer JSON, never an HTML page; the traceback goes to the log.
    return JSONResponse({"error": "Internal Server Error"}, status_code=500)


async def render_os_error(request: Request, exc: Exception) -> Response:
    """A full disk (an upload to the local blob store, say) is the server's temporary state,
    not a bug: 503 with Retry-After, like an append refused below the free-space threshold."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        GATEWAY_REJECTIONS.labels(route=request.scope.get("forgeline.route", "unmatched"), reason="disk_full").inc()
        body = {"error": "Service Unavailable: the server is low on disk space", "retry_after": DiskFull.retry_after_s}
        return JSONResponse(body, status_code=503, headers={"Retry-After": str(DiskFull.retry_after_s)})
    raise exc


async def render_http_exception(request: Request, exc: Exception) -> Response:
    # Starlette's own 404/405 answers, as JSON like every other refusal.
    assert isinstance(exc, HTTPException)
    return JSONResponse({"error": exc.detail}, status_code=exc.status_code, headers=exc.headers)
