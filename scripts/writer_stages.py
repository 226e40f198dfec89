"""The writer's stages timed one at a time on the same records: where a row's time goes.

    .venv/bin/python scripts/writer_stages.py [rows]

Typed error records (as the normalizer writes them: JSONEachRow lines) are written to a
fresh embedded bus; then, each alone and in order: the bus read (consumer.poll), taking
each record's line (forgeline.schemas.typed.row_line), joining a batch's lines and the chDB
insert (clickhouse-connect raw_insert, JSONEachRow, batches of 5,000). `forgeline bench
--only writer` measures them together, overlapped as the writer runs them.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from forgeline.bus.embedded import EmbeddedBus
from forgeline.bus.port import Record
from forgeline.schemas.records import ERROR
from forgeline.schemas.typed import row_line, typed_record
from forgeline.warehouse.client import ClickHouseWarehouse
from forgeline.warehouse.migrations import migrate
from services.bench.payloads import typed_error

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
        await producer.send_many([typed_record(ERROR, d, d["event_id"].encode()) for d in chunk])
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
    lines = _timed("row lines", rows, lambda: [row_line(r) for r in records])
    blocks = _timed("join", rows, lambda: [b"\n".join(lines[s : s + BATCH]) for s in range(0, rows, BATCH)])
    warehouse = ClickHouseWarehouse(f"chdb://{root / 'warehouse'}")
    migrate(warehouse)

    def insert() -> None:
        for block in blocks:
            warehouse.insert_json_lines("errors", ERROR.column_names, block)

    _timed("chDB insert", rows, insert)
    warehouse.close()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000)
