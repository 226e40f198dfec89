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

The app (app.py's GatewayApp) asks ``match`` first and awaits ``handle`` straight from its
``__call__``: a request that waits (for the bus, say) is resumed through as few frames as
possible. Every other request (other methods, other paths, lifespan) goes through Starlette
unchanged.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

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
class IngestRoute:
    endpoint: Endpoint
    metrics: RouteMetrics


class IngestPath:
    def __init__(self, endpoints: Mapping[str, Endpoint], load: Load, bodies: BodyGuard) -> None:
        """``endpoints``: POST path → the handler its Route holds."""
        self.load = load
        self.bodies = bodies
        self._routes = {path: IngestRoute(endpoint, RouteMetrics(path)) for path, endpoint in endpoints.items()}

    def match(self, scope: Scope) -> IngestRoute | None:
        """The ingest route for this exact (method, path); None: Starlette's stack answers."""
        if scope["type"] == "http" and scope["method"] == "POST":
            return self._routes.get(scope["path"])
        return None

    async def handle(self, route: IngestRoute, scope: Scope, receive: Receive, send: Send) -> None:
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
