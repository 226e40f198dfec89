"""Run the gateway with uvicorn (SIGTERM: stop accepting, drain in-flight, flush the producer)."""

from __future__ import annotations

import uvicorn

from forgeline.bus.factory import create_bus
from forgeline.config import Settings
from services.gateway.app import create_app


def run_gateway(settings: Settings) -> None:
    app = create_app(settings, create_bus(settings.resolved_bus_url, settings.partitions))
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        loop="uvloop",
        http="httptools",
        timeout_graceful_shutdown=30,
        timeout_keep_alive=settings.keep_alive_seconds,
    )
