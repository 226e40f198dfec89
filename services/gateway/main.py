"""Run the gateway with uvicorn (SIGTERM: stop accepting, drain in-flight, flush the producer)."""

from __future__ import annotations

import contextlib
import sys

import uvicorn
from starlette.types import ASGIApp

from forgeline.bus.factory import create_bus
from forgeline.config import Settings
from services.exitcodes import EXIT_CANNOT_SERVE
from services.gateway.app import create_app
from services.gateway.protocol import header_timeout_protocol


def server_config(app: ASGIApp, settings: Settings) -> uvicorn.Config:
    """The uvicorn configuration of a gateway (tests start the same one on a loopback port)."""
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        loop="uvloop",
        http=header_timeout_protocol(settings.header_read_timeout_seconds),
        # Who the client is decides forgeline.clientip alone, from the peer address
        # and FORGELINE_TRUSTED_PROXIES. uvicorn's default would already have replaced the peer
        # with X-Forwarded-For whenever it came from 127.0.0.1, trusted or not.
        proxy_headers=False,
        timeout_graceful_shutdown=30,
        timeout_keep_alive=settings.keep_alive_seconds,
        # No limit_concurrency: it counts idle connections too and answers plain-text 503s;
        # the app sheds load itself (max_in_flight) and bounds slow bodies (slowbody.py).
    )


def run_gateway(settings: Settings) -> None:
    app = create_app(settings, create_bus(settings.resolved_bus_url, settings.partitions))
    server = uvicorn.Server(server_config(app, settings))
    with contextlib.suppress(KeyboardInterrupt):
        server.run()
    if not server.started:
        sys.exit(EXIT_CANNOT_SERVE)  # as uvicorn.run: the port was taken or the app failed to start
