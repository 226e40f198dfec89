"""The writer's stages timed one at a time on the same records: where a row's time goes.

    .venv/bin/python scripts/writer_stages.py [rows]

Typed error records are written to a fresh embedded bus; then, each alone and in order:
the bus read (consumer.poll), the JSON decode, the conversion to columns and the chDB
insert (clickhouse-connect, columnar, batches of 5,000). `forgeline bench --only writer`
measures them together, overlapped as the writer runs them.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from forgeline.bus.embedded import EmbeddedBus
from forgeline.bus.port import OutgoingRecord, Record
from forgeline.schemas.records import ERROR
from forgeline.warehouse.client import ClickHouseWarehouse
from forgeline.warehouse.migrations import migrate
from services.bench.payloads import typed_error
from services.writer.steps import decode_typed, to_columns

BATCH = 5000


def _timed(name: str, rows: int, step: Callable[[], Any]) -> Any:
    started = time.perf_counter()
    result = step()
    print(f"{name:12} {(time.perf_counter() - started) / rows * 1e6:6.1f} µs/row")
    return result


async def _fill(bus: EmbeddedBus, docs: list[dict[str, Any]]) -> None:
    producer = bus.producer()
    await producer.start()
    for start in range(0, len(docs), 1000):
        chunk = docs[start : start + 1000]
        await producer.send_many(
            [OutgoingRecord(ERROR.topic, orjson.dumps(d), key=d["event_id"].encode()) for d in chunk]
        )
    await producer.stop()


async def _read(bus: EmbeddedBus, rows: int) -> list[Record]:
    consumer = bus.consumer("stages", [ERROR.topic])
    await consumer.start()
    records: list[Record] = []
    while len(records) < rows:
        records += await consumer.poll(BATCH, timeout_s=0.5)
    await consumer.stop()
    return records


def main(rows: int) -> None:
    root = Path(tempfile.mkdtemp(prefix="forgeline-stages-"))
    bus = EmbeddedBus(root / "bus", default_partitions=2)
    now = int(time.time() * 1000)
    asyncio.run(_fill(bus, [typed_error(i, now) for i in range(rows)]))
    records = _timed("bus read", rows, lambda: asyncio.run(_read(bus, rows)))
    docs = _timed("decode", rows, lambda: [decode_typed(r) for r in records])
    batches = _timed(
        "to columns", rows, lambda: [to_columns(ERROR, docs[s : s + BATCH])[0] for s in range(0, rows, BATCH)]
    )
    warehouse = ClickHouseWarehouse(f"chdb://{root / 'warehouse'}")
    migrate(warehouse)

    def insert() -> None:
        for columns in batches:
            warehouse.insert_columns("errors", columns, ERROR.column_names)

    _timed("chDB insert", rows, insert)
    warehouse.close()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000)
