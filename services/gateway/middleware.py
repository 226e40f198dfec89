"""Request metrics as pure ASGI middleware: count and time every request by route and status."""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from forgeline.telemetry.metrics import GATEWAY_LATENCY, GATEWAY_REQUESTS


class RequestMetrics:
    def __init__(self, app: ASGIApp, known_paths: frozenset[str]) -> None:
        self.app = app
        self.known_paths = known_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # Label by the route's fixed path, never the raw path a client chose.
        route = scope["path"] if scope["path"] in self.known_paths else "unmatched"
        scope["forgeline.route"] = route
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            GATEWAY_REQUESTS.labels(route=route, status=str(status)).inc()
            GATEWAY_LATENCY.labels(route=route).observe(time.perf_counter() - started)
