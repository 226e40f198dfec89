"""Retrying sinks for the stateful processors (errors, spans, monitors).

Both helpers retry *retriable* failures with backoff until they succeed or the caller is
cancelled; nothing is committed meanwhile, so a stuck sink stalls its consumer rather than
losing data. A non-retriable warehouse error is raised: for state rows we write ourselves
it means a bug (a schema mismatch), and the supervisor restarts the process.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from forgeline.bus.port import BusUnavailable, OutgoingRecord, Producer
from forgeline.processing.loop import backoff
from forgeline.telemetry.metrics import PROCESSOR_RETRIES
from forgeline.warehouse.port import Warehouse, WarehouseError

log = logging.getLogger(__name__)


def to_datetime(millis: int | float) -> datetime:
    """Epoch milliseconds → an aware UTC datetime (what DateTime64(3, 'UTC') columns take)."""
    return datetime.fromtimestamp(int(millis) / 1000, UTC)


async def send_with_retry(producer: Producer, records: Sequence[OutgoingRecord], service: str) -> None:
    if not records:
        return
    attempt = 0
    while True:
        try:
            await producer.send_many(records)
            return
        except BusUnavailable as err:
            PROCESSOR_RETRIES.labels(service=service, reason="bus").inc()
            log.warning("append failed; retrying", extra={"error": repr(err), "attempt": attempt})
            await backoff(attempt)
            attempt += 1


async def insert_with_retry(
    warehouse: Warehouse, table: str, rows: Sequence[Sequence[Any]], columns: Sequence[str], service: str
) -> None:
    if not rows:
        return
    attempt = 0
    while True:
        try:
            await asyncio.to_thread(warehouse.insert, table, rows, columns)
            return
        except WarehouseError as err:
            if not err.retriable:
                raise
            PROCESSOR_RETRIES.labels(service=service, reason="warehouse").inc()
            log.warning("insert failed; retrying", extra={"table": table, "error": str(err)[:500]})
            await backoff(attempt)
            attempt += 1


async def query_with_retry(
    warehouse: Warehouse, sql: str, parameters: dict[str, Any] | None, service: str
) -> list[tuple[Any, ...]]:
    attempt = 0
    while True:
        try:
            return await asyncio.to_thread(warehouse.query_rows, sql, parameters)
        except WarehouseError as err:
            if not err.retriable:
                raise
            PROCESSOR_RETRIES.labels(service=service, reason="warehouse").inc()
            await backoff(attempt)
            attempt += 1
