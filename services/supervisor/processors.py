"""Run processors in one process (embedded mode) or one alone (`forgeline process NAME`).

SIGTERM/SIGINT stop them gracefully: stop polling, flush buffers, commit, close. If any
processor fails, the others are stopped and the process exits non-zero so that its
supervisor (`forgeline up`, or Kubernetes) restarts it from the committed offsets.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

import uvicorn

from forgeline.bus.factory import create_bus
from forgeline.bus.provision import ensure_topics
from forgeline.config import Settings, SettingsError
from forgeline.processing.host import ProcessorHost
from forgeline.processing.registry import Parts
from forgeline.warehouse.factory import open_warehouse
from services.admin import admin_app, admin_exposure_problem, admin_server
from services.exitcodes import EXIT_CANNOT_SERVE
from services.supervisor.lifecycle import open_lifecycle
from services.supervisor.registry import SERVICES

PROCESSORS = tuple(SERVICES)
# Processors that read or write the warehouse (chDB: one owning process).
WAREHOUSE_USERS = tuple(name for name, spec in SERVICES.items() if spec.uses_warehouse)
log = logging.getLogger(__name__)


async def run_processors(settings: Settings, names: tuple[str, ...]) -> int:
    unknown = set(names) - set(PROCESSORS)
    if unknown:
        raise SystemExit(f"unknown processor(s): {', '.join(sorted(unknown))}; choose from {', '.join(PROCESSORS)}")
    exposure = admin_exposure_problem(settings.admin_host, settings.admin_key.reveal())
    if exposure:
        raise SettingsError(exposure)
    bus = create_bus(settings.resolved_bus_url, settings.partitions)
    # Kafka mode: every topic exists, with its configured partitions, before anyone subscribes.
    await ensure_topics(bus)
    warehouse = await asyncio.to_thread(open_warehouse, settings) if set(names) & set(WAREHOUSE_USERS) else None
    lifecycle = await asyncio.to_thread(open_lifecycle, settings, warehouse) if warehouse is not None else None
    parts = Parts(settings, bus, warehouse)
    # In registry order, whatever order they were named in.
    processors: dict[str, ProcessorHost] = {name: spec.build(parts) for name, spec in SERVICES.items() if name in names}

    def readiness() -> dict[str, bool]:
        return {name: p.ready for name, p in processors.items()}

    # The admin port keeps to its own address (loopback by default), not the gateway's --host.
    server = admin_server(
        admin_app(readiness, warehouse, settings.admin_key.reveal(), lifecycle),
        settings.admin_host,
        settings.admin_port,
    )
    loop = asyncio.get_running_loop()

    def request_stop() -> None:
        log.info("stopping processors")
        for processor in processors.values():
            processor.stop()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, request_stop)

    tasks = {asyncio.create_task(p.run(), name=name): name for name, p in processors.items()}
    server_task = asyncio.create_task(_serve(server), name="admin")
    sweeps_stop = asyncio.Event()
    sweeps = (
        asyncio.create_task(lifecycle.run_sweeps(settings.retention_sweep_seconds, sweeps_stop)) if lifecycle else None
    )
    exit_code = 0
    try:
        pending: set[asyncio.Task[None]] = {*tasks, server_task}
        while pending - {server_task}:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            if server_task in done and not server.should_exit:
                # The admin port could not be served (its address is taken): a setup problem
                # that a restart cannot fix. Exit 3 tells `forgeline up` not to restart us.
                log.error("admin port could not be served", extra={"port": settings.admin_port})
                exit_code = EXIT_CANNOT_SERVE
                request_stop()
            for task in done - {server_task}:
                name = tasks[task]
                error = task.exception()
                if error is not None or not processors[name].stopping:
                    # A processor that fails, or returns unasked, takes the process down:
                    # the supervisor restarts it from the committed offsets.
                    log.error("processor failed", exc_info=error, extra={"processor": name})
                    exit_code = exit_code or 1
                    request_stop()
    finally:
        sweeps_stop.set()
        if sweeps is not None:
            await sweeps
        server.should_exit = True
        if not server_task.done():
            await server_task
        if warehouse is not None:
            warehouse.close()
    log.info("processors stopped", extra={"exit_code": exit_code})
    return exit_code


async def _serve(server: uvicorn.Server) -> None:
    """Serve the admin port; uvicorn exits the process when it cannot bind, this returns instead."""
    with contextlib.suppress(SystemExit):
        await server.serve()
