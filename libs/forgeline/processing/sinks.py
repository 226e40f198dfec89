"""Retrying sinks for the processors: appends to the bus, warehouse inserts and reads.

Each retries *retriable* failures (``forgeline.processing.retry``) until it succeeds or
the caller is cancelled; nothing is committed meanwhile, so a stuck sink stalls its
consumer rather than losing data. A non-retriable warehouse error is raised: for state
rows we write ourselves it means a bug (a schema mismatch), and the supervisor restarts
the process.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from forgeline.bus.port import BusUnavailable, OutgoingRecord, Producer
from forgeline.processing.retry import retrying
from forgeline.warehouse.port import Warehouse, WarehouseError


def bus_down(err: Exception) -> bool:
    return isinstance(err, BusUnavailable)


def warehouse_retriable(err: Exception) -> bool:
    return isinstance(err, WarehouseError) and err.retriable


async def send_with_retry(producer: Producer, records: Sequence[OutgoingRecord], service: str) -> None:
    if records:
        await retrying(lambda: producer.send_many(records), service=service, reason="bus", retriable=bus_down)


async def insert_with_retry(
    warehouse: Warehouse, table: str, rows: Sequence[Sequence[Any]], columns: Sequence[str], service: str
) -> None:
    if rows:
        await retrying(
            lambda: asyncio.to_thread(warehouse.insert, table, rows, columns),
            service=service,
            reason="warehouse",
            retriable=warehouse_retriable,
            what=f"insert {table}",
        )


async def query_with_retry(
    warehouse: Warehouse, sql: str, parameters: dict[str, Any] | None, service: str
) -> list[tuple[Any, ...]]:
    return await retrying(
        lambda: asyncio.to_thread(warehouse.query_rows, sql, parameters),
        service=service,
        reason="warehouse",
        retriable=warehouse_retriable,
        what="query",
    )
