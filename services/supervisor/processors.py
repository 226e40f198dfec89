"""Run processors in one process (embedded mode) or one alone (`forgeline process NAME`).

SIGTERM/SIGINT stop them gracefully: stop polling, flush buffers, commit, close. If any
processor fails, the others are stopped and the process exits non-zero so that its
supervisor (`forgeline up`, or Kubernetes) restarts it from the committed offsets.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Protocol

from forgeline.blobstore.factory import create_blob_store
from forgeline.blobstore.port import BlobStore
from forgeline.bus.factory import create_bus
from forgeline.bus.port import Bus
from forgeline.bus.provision import ensure_topics
from forgeline.config import Settings, SettingsError
from forgeline.processing.deadletter import DeadLetterPolicy
from forgeline.warehouse.client import ClickHouseWarehouse
from forgeline.warehouse.migrations import migrate
from forgeline.warehouse.port import Warehouse
from services.admin import admin_app, admin_exposure_problem, admin_server
from services.errors.main import ErrorGrouperService
from services.exporter.main import Exporter
from services.monitors.main import MonitorEvaluatorService
from services.normalizer.main import Normalizer
from services.notifier.main import NotifierService, NotifyPolicy
from services.spans.main import SpanAssemblerService
from services.supervisor.lifecycle import open_lifecycle
from services.writer.main import Writer

PROCESSORS = ("normalizer", "writer", "errors", "spans", "monitors", "exporter", "notifier")
# Processors that read or write the warehouse (chDB: one owning process).
WAREHOUSE_USERS = ("writer", "errors", "spans", "monitors")
log = logging.getLogger(__name__)


class Processor(Protocol):
    ready: bool

    @property
    def stopping(self) -> bool: ...

    async def run(self) -> None: ...

    def stop(self) -> None: ...


def open_warehouse(settings: Settings) -> Warehouse:
    warehouse = ClickHouseWarehouse(settings.resolved_warehouse_dsn)
    applied = migrate(warehouse)
    log.info("warehouse ready", extra={"migrations_applied": applied})
    return warehouse


def export_store(settings: Settings, url: str) -> BlobStore:
    """The exporter's destination (``file://DIR`` or ``s3://…``), through the blob-store port."""
    return create_blob_store(
        url,
        settings.blob_signing_key,
        settings.data_dir / "blob-signing.key",
        settings.public_url or f"http://{settings.host}:{settings.port}",
        (settings.s3_access_key, settings.s3_secret_key),
    )


def notifier_service(settings: Settings, bus: Bus) -> NotifierService:
    from forgeline.notify.crypto import SecretBox, load_key

    policy = NotifyPolicy(
        max_attempts=settings.notify_max_attempts,
        backoff_s=settings.notify_backoff_seconds,
        backoff_max_s=settings.notify_backoff_max_seconds,
        timeout_s=settings.notify_timeout_seconds,
        concurrency=settings.notify_concurrency,
        allowed_networks=settings.notify_allowed_networks,
    )
    box = SecretBox(load_key(settings.data_dir.resolve(), settings.notify_key))
    return NotifierService(bus, box, policy, dead_letters=dead_letter_policy(settings))


def dead_letter_policy(settings: Settings) -> DeadLetterPolicy:
    return DeadLetterPolicy(settings.dlq_max_ratio, settings.dlq_min_records, settings.dlq_window_records)


async def run_processors(settings: Settings, names: tuple[str, ...]) -> int:
    unknown = set(names) - set(PROCESSORS)
    if unknown:
        raise SystemExit(f"unknown processor(s): {', '.join(sorted(unknown))}; choose from {', '.join(PROCESSORS)}")
    exposure = admin_exposure_problem(settings.admin_host, settings.admin_key)
    if exposure:
        raise SettingsError(exposure)
    bus = create_bus(settings.resolved_bus_url, settings.partitions)
    # Kafka mode: every topic exists, with its configured partitions, before anyone subscribes.
    await ensure_topics(bus)
    warehouse = await asyncio.to_thread(open_warehouse, settings) if set(names) & set(WAREHOUSE_USERS) else None
    lifecycle = await asyncio.to_thread(open_lifecycle, settings, warehouse) if warehouse is not None else None
    processors: dict[str, Processor] = {}
    dlq = dead_letter_policy(settings)
    if "normalizer" in names:
        processors["normalizer"] = Normalizer(bus, settings.normalizer_batch, dead_letters=dlq)
    if warehouse is not None and "writer" in names:
        processors["writer"] = Writer(
            bus, warehouse, settings.writer_batch_rows, settings.writer_flush_seconds, dead_letters=dlq
        )
    if warehouse is not None and "errors" in names:
        processors["errors"] = ErrorGrouperService(bus, warehouse, dead_letters=dlq)
    if warehouse is not None and "spans" in names:
        processors["spans"] = SpanAssemblerService(
            bus, warehouse, quiet_s=settings.span_quiet_seconds, dead_letters=dlq
        )
    if "notifier" in names:
        processors["notifier"] = notifier_service(settings, bus)
    if warehouse is not None and "monitors" in names:
        processors["monitors"] = MonitorEvaluatorService(
            bus,
            warehouse,
            margin_s=settings.monitor_margin_seconds,
            tick_s=settings.monitor_tick_seconds,
            slack_s=settings.publish_timeout_seconds + 1.0,
            dead_letters=dlq,
        )

    if "exporter" in names:
        processors["exporter"] = Exporter(
            bus,
            export_store(settings, settings.resolved_export_url),
            max_rows=settings.export_max_rows,
            max_bytes=settings.export_max_bytes,
            flush_seconds=settings.export_flush_seconds,
            compress=settings.export_gzip,
            dead_letters=dlq,
        )

    def readiness() -> dict[str, bool]:
        return {name: p.ready for name, p in processors.items()}

    # The admin port keeps to its own address (loopback by default), not the gateway's --host.
    server = admin_server(
        admin_app(readiness, warehouse, settings.admin_key, lifecycle), settings.admin_host, settings.admin_port
    )
    loop = asyncio.get_running_loop()

    def request_stop() -> None:
        log.info("stopping processors")
        for processor in processors.values():
            processor.stop()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, request_stop)

    tasks = {asyncio.create_task(p.run(), name=name): name for name, p in processors.items()}
    server_task = asyncio.create_task(server.serve(), name="admin")
    sweeps_stop = asyncio.Event()
    sweeps = (
        asyncio.create_task(lifecycle.run_sweeps(settings.retention_sweep_seconds, sweeps_stop)) if lifecycle else None
    )
    exit_code = 0
    try:
        pending = set(tasks)
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                name = tasks[task]
                error = task.exception()
                if error is not None or not processors[name].stopping:
                    # A processor that fails, or returns unasked, takes the process down:
                    # the supervisor restarts it from the committed offsets.
                    log.error("processor failed", exc_info=error, extra={"processor": name})
                    exit_code = 1
                    request_stop()
    finally:
        sweeps_stop.set()
        if sweeps is not None:
            await sweeps
        server.should_exit = True
        await server_task
        if warehouse is not None:
            warehouse.close()
    log.info("processors stopped", extra={"exit_code": exit_code})
    return exit_code
