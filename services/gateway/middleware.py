"""Pure ASGI middleware: count and time every request by route and status, and shed load.

Load shedding: beyond ``max_in_flight`` concurrent requests the gateway answers 503 with
Retry-After at once instead of queueing them — under overload (clients faster than the bus)
memory stays bounded and clients back off. Probes and /metrics are never shed.

The ingest POSTs take their own path (fastpath.py) through the same pieces: one ``Load``
counts the requests in flight on both paths, one ``RouteMetrics`` per route counts them.
"""

from __future__ import annotations

import time

from prometheus_client import Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from forgeline.telemetry.metrics import GATEWAY_LATENCY, GATEWAY_REJECTIONS, GATEWAY_REQUESTS

NEVER_SHED = frozenset({"/health", "/ready", "/metrics"})
_OVERLOADED_BODY = b'{"error":"Service Unavailable: too many requests in flight","retry_after":1}'
_OVERLOADED_HEADERS = [
    (b"content-type", b"application/json"),
    (b"content-length", str(len(_OVERLOADED_BODY)).encode()),
    (b"retry-after", b"1"),
]


class Load:
    """Requests in flight, shared by every path through the app."""

    __slots__ = ("in_flight", "max_in_flight")

    def __init__(self, max_in_flight: int) -> None:
        self.in_flight = 0
        self.max_in_flight = max_in_flight

    @property
    def full(self) -> bool:
        return self.in_flight >= self.max_in_flight


class RouteMetrics:
    """One route's series, its labelled children looked up once: ``labels()`` validates its
    values and takes a lock on every call, which showed in the per-request profile."""

    __slots__ = ("route", "_latency", "_by_status", "_overloaded")

    def __init__(self, route: str) -> None:
        self.route = route
        self._latency: Histogram = GATEWAY_LATENCY.labels(route)
        self._by_status: dict[int, Counter] = {}
        self._overloaded: Counter | None = None

    def record(self, status: int, seconds: float) -> None:
        """The request's one update: its count by status and its latency."""
        counter = self._by_status.get(status)
        if counter is None:
            counter = self._by_status[status] = GATEWAY_REQUESTS.labels(self.route, str(status))
        counter.inc()
        self._latency.observe(seconds)

    async def shed(self, send: Send) -> None:
        """Answer 503 + Retry-After at once; counted as a rejection, not timed."""
        await send({"type": "http.response.start", "status": 503, "headers": _OVERLOADED_HEADERS})
        await send({"type": "http.response.body", "body": _OVERLOADED_BODY})
        if self._overloaded is None:
            self._overloaded = GATEWAY_REJECTIONS.labels(self.route, "overloaded")
        self._overloaded.inc()
        counter = self._by_status.get(503)
        if counter is None:
            counter = self._by_status[503] = GATEWAY_REQUESTS.labels(self.route, "503")
        counter.inc()


class RequestMetrics:
    def __init__(self, app: ASGIApp, known_paths: frozenset[str], max_in_flight: int, load: Load | None = None) -> None:
        self.app = app
        self.load = load or Load(max_in_flight)
        # Label by the route's fixed path, never the raw path a client chose.
        self._routes = {path: RouteMetrics(path) for path in known_paths}
        self._unmatched = RouteMetrics("unmatched")

    @property
    def in_flight(self) -> int:
        return self.load.in_flight

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        metrics = self._routes.get(scope["path"], self._unmatched)
        scope["forgeline.route"] = metrics.route
        started = time.perf_counter()
        load = self.load
        if load.in_flight >= load.max_in_flight and metrics.route not in NEVER_SHED:
            await metrics.shed(send)
            return
        load.in_flight += 1
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            load.in_flight -= 1
            metrics.record(status, time.perf_counter() - started)
