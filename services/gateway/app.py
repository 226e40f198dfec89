"""The gateway: authenticate, rate-limit, validate, enqueue, reply. No storage work."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import Receive, Scope, Send

from forgeline.blobstore.configured import blob_store_for
from forgeline.bus.embedded import EmbeddedBus
from forgeline.bus.port import Bus
from forgeline.clientip import ClientAddress
from forgeline.clock import Clock, SystemClock
from forgeline.config import Settings
from forgeline.telemetry.metrics import GATEWAY_TOKENS
from forgeline.tenancy.store import TenancyFollower
from services.gateway.authlimit import AuthFailureLimit
from services.gateway.errors import (
    ApiError,
    JSONResponse,
    render_api_error,
    render_http_exception,
    render_os_error,
    render_unexpected,
)
from services.gateway.fastpath import Endpoint, IngestPath
from services.gateway.metrics_view import gateway_registry
from services.gateway.middleware import Load, RequestMetrics
from services.gateway.openapi import openapi_document
from services.gateway.publish import Publisher
from services.gateway.routes import forge, logister, logister_batch, msgpack
from services.gateway.routes.downloads import download_routes
from services.gateway.routes.forge import ForgeApi
from services.gateway.routes.logister import LogisterApi
from services.gateway.routes.msgpack import MsgpackApi
from services.gateway.slowbody import BodyGuard, BodyTimeouts, SlowBodies

log = logging.getLogger(__name__)

# The POSTs that carry events: they take IngestPath's direct way (fastpath.py).
INGEST_PATHS = frozenset(
    {
        logister.INGEST_EVENTS_PATH,
        logister_batch.BATCH_PATH,
        logister.CHECK_INS_PATH,
        logister.DEPLOYMENTS_PATH,
        forge.SESSIONS_PATH,
        forge.EVENTS_PATH,
        forge.REPORTS_PATH,
        forge.UPLOADS_PATH,
        *msgpack.EVENT_PATHS,
    }
)


class GatewayApp(Starlette):
    """One Starlette app; the ingest POSTs are dispatched before its middleware stack (fastpath.py)."""

    def __init__(self, ingest: Mapping[str, Endpoint], load: Load, bodies: BodyGuard, **starlette: Any) -> None:
        super().__init__(**starlette)
        self.ingest = ingest
        self.load = load
        self.bodies = bodies
        self.ingest_path = IngestPath(ingest, load, bodies)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = self.ingest_path.match(scope)
        if route is None:
            await super().__call__(scope, receive, send)
            return
        scope["app"] = self
        await self.ingest_path.handle(route, scope, receive, send)


def ingest_endpoints(routes: Sequence[BaseRoute]) -> dict[str, Endpoint]:
    """The handlers the ingest Routes hold, by path: the same callables either way."""
    return {
        route.path: route.endpoint
        for route in routes
        if isinstance(route, Route) and route.path in INGEST_PATHS and route.methods and "POST" in route.methods
    }


def body_timeouts(settings: Settings) -> BodyTimeouts:
    return BodyTimeouts(
        read_seconds=settings.body_read_timeout_seconds,
        idle_seconds=settings.body_idle_timeout_seconds,
        min_bytes_per_second=settings.body_min_bytes_per_second,
        slow_after_seconds=settings.slow_body_after_seconds,
        max_slow=settings.max_slow_bodies,
        max_slow_per_client=settings.max_slow_bodies_per_client,
    )


def create_app(settings: Settings, bus: Bus, clock: Clock | None = None) -> Starlette:
    clock = clock or SystemClock()
    # One timer per publish, the producer's: the shorter of the bus's own bound (Kafka's
    # send_timeout_ms) and the gateway's publish timeout.
    producer = bus.producer(send_timeout_s=min(settings.publish_timeout_seconds, bus.capabilities.send_timeout_s))
    tenancy = TenancyFollower(bus)
    publisher = Publisher(producer, bus.capabilities.max_record_bytes)
    client_address = ClientAddress(settings.trusted_proxies)
    # One failure budget per source for every family: guesses cannot be spread over them.
    auth_failures = AuthFailureLimit(
        settings.auth_failure_rate_limit_requests, settings.auth_failure_period_seconds, clock, client_address
    )
    logister_api = LogisterApi(
        settings=settings,
        tenancy=tenancy.table,
        publisher=publisher,
        clock=clock,
        auth_failures=auth_failures,
        refresh_tokens=tenancy.refresh,
    )
    blobs = blob_store_for(settings, settings.resolved_blob_store_url)
    forge_api = ForgeApi(
        settings=settings,
        tenancy=tenancy.table,
        publisher=publisher,
        clock=clock,
        blobs=blobs,
        auth_failures=auth_failures,
        refresh_tokens=tenancy.refresh,
    )
    msgpack_api = MsgpackApi(
        settings=settings,
        tenancy=tenancy.table,
        publisher=publisher,
        clock=clock,
        client_address=client_address,
        blobs=blobs,
        auth_failures=auth_failures,
        refresh_tokens=tenancy.refresh,
    )

    gateway_metrics = gateway_registry()

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def ready(request: Request) -> Response:
        checks = {"tokens_loaded": tenancy.loaded, "bus": await producer.ready()}
        if isinstance(bus, EmbeddedBus):  # writes are refused below the free-space threshold
            checks["disk_space"] = bus.space_problem() is None
        ok = all(checks.values())
        return JSONResponse({"ready": ok, "checks": checks}, status_code=200 if ok else 503)

    async def metrics(request: Request) -> Response:
        GATEWAY_TOKENS.set(len(tenancy.table.tokens))
        return Response(generate_latest(gateway_metrics), media_type=CONTENT_TYPE_LATEST)

    async def openapi(request: Request) -> Response:
        return JSONResponse(openapi_document())

    routes = [
        Route("/health", health, methods=["GET"]),
        Route("/ready", ready, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
        *logister_api.routes(),
        *forge_api.routes(),
        *download_routes(blobs),
        *msgpack_api.routes(),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await producer.start()
        await tenancy.start()
        follower = asyncio.create_task(tenancy.follow(settings.token_refresh_seconds), name="tenancy-follow")
        log.info("gateway ready", extra={"tokens": len(tenancy.table.tokens)})
        try:
            yield
        finally:
            # Graceful shutdown: uvicorn has stopped taking requests and drained the
            # in-flight ones before this runs; flush what the producer still holds.
            follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await follower
            await producer.stop()
            await tenancy.stop()
            log.info("gateway stopped")

    known = frozenset(route.path for route in routes)
    # One in-flight count and one slow-body state for both ways through the app.
    load = Load(settings.max_in_flight)
    bodies = BodyGuard(body_timeouts(settings), client_address)
    return GatewayApp(
        ingest=ingest_endpoints(routes),
        load=load,
        bodies=bodies,
        routes=routes,
        middleware=[
            Middleware(RequestMetrics, known_paths=known, max_in_flight=settings.max_in_flight, load=load),
            Middleware(SlowBodies, timeouts=bodies.timeouts, client_address=client_address, guard=bodies),
        ],
        exception_handlers={
            ApiError: render_api_error,
            HTTPException: render_http_exception,
            OSError: render_os_error,
            Exception: render_unexpected,
        },
        lifespan=lifespan,
    )
