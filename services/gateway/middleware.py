"""Pure ASGI middleware: count and time every request by route and status, and shed load.

Load shedding: beyond ``max_in_flight`` concurrent requests the gateway answers 503 with
Retry-After at once instead of queueing them — under overload (clients faster than the bus)
memory stays bounded and clients back off. Probes and /metrics are never shed.
"""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from forgeline.telemetry.metrics import GATEWAY_LATENCY, GATEWAY_REJECTIONS, GATEWAY_REQUESTS, LabelledChildren

_NEVER_SHED = frozenset({"/health", "/ready", "/metrics"})
_OVERLOADED_BODY = b'{"error":"Service Unavailable: too many requests in flight","retry_after":1}'
_OVERLOADED_HEADERS = [
    (b"content-type", b"application/json"),
    (b"content-length", str(len(_OVERLOADED_BODY)).encode()),
    (b"retry-after", b"1"),
]


class RequestMetrics:
    def __init__(self, app: ASGIApp, known_paths: frozenset[str], max_in_flight: int) -> None:
        self.app = app
        self.known_paths = known_paths
        self.max_in_flight = max_in_flight
        self.in_flight = 0
        self._requests = LabelledChildren(GATEWAY_REQUESTS)
        self._latency = LabelledChildren(GATEWAY_LATENCY)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # Label by the route's fixed path, never the raw path a client chose.
        route = scope["path"] if scope["path"] in self.known_paths else "unmatched"
        scope["forgeline.route"] = route
        started = time.perf_counter()
        if self.in_flight >= self.max_in_flight and route not in _NEVER_SHED:
            await send({"type": "http.response.start", "status": 503, "headers": _OVERLOADED_HEADERS})
            await send({"type": "http.response.body", "body": _OVERLOADED_BODY})
            GATEWAY_REJECTIONS.labels(route=route, reason="overloaded").inc()
            GATEWAY_REQUESTS.labels(route=route, status="503").inc()
            return
        self.in_flight += 1
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            self.in_flight -= 1
            self._requests.get(route, str(status)).inc()
            self._latency.get(route).observe(time.perf_counter() - started)
