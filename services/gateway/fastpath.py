"""The ingest POSTs' own way through the gateway: one ASGI dispatch in front of Starlette's stack.

Through Starlette a request passes ServerErrorMiddleware, our two middleware
(middleware.py, slowbody.py), ExceptionMiddleware, the router's scan of every route and the
route's exception wrapper: a coroutine frame and a ``send`` wrapper each, a few µs each, for
every event a studio sends. The ingest endpoints take the load, so ``IngestPath`` matches
their exact (method, path) with one dict lookup and does what those layers do for them in
one frame:

- shed load beyond the in-flight limit (503 + Retry-After), counted in the same ``Load``;
- guard the body (slow-body deadlines and slots, the same ``BodyGuard``);
- call the same handler the Route holds, with a Request on the guarded ``receive``;
- render ``ApiError``, ``HTTPException`` and a full disk as the app's exception handlers do,
  and anything else as the JSON 500, re-raised for the server's log (as ServerErrorMiddleware);
- count and time the request once, under the same route and status labels.

Every other request (other methods, other paths, lifespan) goes through Starlette unchanged.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from services.gateway.errors import (
    ApiError,
    api_error_response,
    disk_full_response,
    http_exception_response,
    unexpected_response,
)
from services.gateway.middleware import Load, RouteMetrics
from services.gateway.slowbody import BodyGuard

Endpoint = Callable[[Request], Awaitable[Response]]


@dataclass(frozen=True, slots=True)
class _Ingest:
    endpoint: Endpoint
    metrics: RouteMetrics


class IngestPath:
    def __init__(self, app: ASGIApp, endpoints: Mapping[str, Endpoint], load: Load, bodies: BodyGuard) -> None:
        """``app``: the Starlette stack for everything else; ``endpoints``: POST path → handler."""
        self.app = app
        self.load = load
        self.bodies = bodies
        self._routes = {path: _Ingest(endpoint, RouteMetrics(path)) for path, endpoint in endpoints.items()}

    @property
    def paths(self) -> frozenset[str]:
        return frozenset(self._routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            route = self._routes.get(scope["path"])
            if route is not None:
                await self._ingest(route, scope, receive, send)
                return
        await self.app(scope, receive, send)

    async def _ingest(self, route: _Ingest, scope: Scope, receive: Receive, send: Send) -> None:
        metrics = route.metrics
        scope["forgeline.route"] = metrics.route
        started = time.perf_counter()
        load = self.load
        if load.in_flight >= load.max_in_flight:
            await metrics.shed(send)
            return
        load.in_flight += 1
        body = self.bodies.body(scope, receive)
        status = 500
        responding = False
        try:
            try:
                response = await route.endpoint(Request(scope, body.receive, send))
            except ApiError as exc:
                response = api_error_response(metrics.route, exc)
            except HTTPException as exc:
                response = http_exception_response(exc)
            except OSError as exc:
                full = disk_full_response(metrics.route, exc)
                if full is None:
                    raise
                response = full
            status = response.status_code
            responding = True
            await response(scope, body.receive, send)
        except Exception:
            if not responding:
                await unexpected_response()(scope, body.receive, send)
            raise
        finally:
            body.release()
            load.in_flight -= 1
            metrics.record(status, time.perf_counter() - started)
