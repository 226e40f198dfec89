"""The writer on chDB: typed rows inserted as JSONEachRow lines that ClickHouse parses.

Checked against the real table, not a recorder: both typed-record formats store the same
cells (timestamps to the millisecond across DateTime64's range), the DEFAULT column
``expires_at`` is computed for rows that leave it out, and a row ClickHouse refuses is
bisected out of its block to ``dlq.writer`` while the rest of the block is stored.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest

from forgeline.bus.factory import create_bus
from forgeline.bus.port import Bus, OutgoingRecord, Record, TopicPartition
from forgeline.bus.provision import ensure_topics
from forgeline.bus.topics import TYPED_ERRORS, dead_letter_topic
from forgeline.schemas.records import DATETIME64_MAX_MS, DATETIME64_MIN_MS, ERROR
from forgeline.schemas.typed import typed_record
from forgeline.warehouse.client import ClickHouseWarehouse
from forgeline.warehouse.migrations import migrate
from services.writer.main import Writer
from tests.fixtures.bus_io import send_all

pytestmark = pytest.mark.integration
NOW = int(time.time() * 1000)


def error_doc(message: str, occurred_at: int = NOW) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()), "legacy_id": 2**64 - 1, "organisation_id": "org", "project_id": "p",
        "environment": "production", "occurred_at": occurred_at, "received_at": NOW, "level": "error",
        "message": message, "fingerprint": "f", "exception_class": "E", "release": "1", "trace_id": "",
        "request_id": "", "session_id": "", "user_id": "", "context": '{"k": "ü"}',
    }  # fmt: skip


async def read_all(bus: Bus, topic: str) -> list[Record]:
    reader = bus.reader([topic])
    await reader.start()
    try:
        return await reader.poll(1000, timeout_s=0.5)
    finally:
        await reader.stop()


async def write(bus: Bus, warehouse: ClickHouseWarehouse, records: list[OutgoingRecord]) -> None:
    """Append ``records`` (all to partition 0) and run a writer until it committed all of them."""
    await send_all(bus, records)
    writer = Writer(bus, warehouse, batch_rows=1000, flush_seconds=0.2)
    task = asyncio.create_task(writer.run())
    try:
        deadline = time.monotonic() + 90
        while True:
            assert not task.done(), "the writer returned by itself"
            if writer.ready:
                offset = await writer._consumer.committed(TopicPartition(TYPED_ERRORS, 0))  # type: ignore[attr-defined]
                if offset >= len(records):
                    break
            assert time.monotonic() < deadline, "not written and committed in time"
            await asyncio.sleep(0.1)
    finally:
        writer.stop()
        await task


@pytest.fixture
def bus(tmp_path: Path) -> Bus:
    bus = create_bus(f"embedded://{tmp_path / 'bus'}", 1)
    asyncio.run(ensure_topics(bus))
    return bus


@pytest.fixture
def warehouse(tmp_path: Path) -> ClickHouseWarehouse:
    warehouse = ClickHouseWarehouse(f"chdb://{tmp_path / 'warehouse'}")
    migrate(warehouse)
    return warehouse


def stored(warehouse: ClickHouseWarehouse, marker: str) -> dict[str, tuple[Any, ...]]:
    rows = warehouse.query_rows(
        "SELECT message, toUnixTimestamp64Milli(occurred_at), legacy_id, context, "
        "toUnixTimestamp(expires_at) - intDiv(toUnixTimestamp64Milli(received_at), 1000) "
        f"FROM forgeline.errors FINAL WHERE position(message, '{marker}') > 0"
    )
    return {row[0]: row[1:] for row in rows}


def test_both_formats_store_the_same_cells_and_a_refused_row_is_bisected_out(
    bus: Bus, warehouse: ClickHouseWarehouse
) -> None:
    marker = uuid.uuid4().hex[:10]
    times = [DATETIME64_MIN_MS, -1, 0, 1, NOW, DATETIME64_MAX_MS]
    new = [typed_record(ERROR, error_doc(f"{marker} new {t}", t), b"k")._replace(partition=0) for t in times]
    old = [
        OutgoingRecord(TYPED_ERRORS, orjson.dumps(error_doc(f"{marker} old {t}", t)), b"k", partition=0) for t in times
    ]
    # A marked line ClickHouse cannot read (an id that is no UUID): only this one is refused.
    refused = typed_record(ERROR, error_doc(f"{marker} refused"), b"k")
    bad_line = refused.value.replace(orjson.loads(refused.value)["event_id"].encode(), b"not-a-uuid")
    # Marked values that are not exactly one line would store two rows, or none: refused too.
    two = typed_record(ERROR, error_doc(f"{marker} two"), b"k")
    two_lines = two._replace(value=two.value + b"\n" + two.value.replace(b" two", b" second"), partition=0)
    empty = two._replace(value=b"", partition=0)
    records = [*new[:3], refused._replace(value=bad_line, partition=0), two_lines, *new[3:], empty, *old]
    asyncio.run(write(bus, warehouse, records))

    rows = stored(warehouse, marker)
    assert len(rows) == 2 * len(times)
    for t in times:
        # Same instant to the millisecond, same other cells, whichever format carried it.
        # expires_at, a DEFAULT the lines leave out, is computed: received_at + the 90-day default.
        assert rows[f"{marker} new {t}"] == rows[f"{marker} old {t}"] == (t, 2**64 - 1, '{"k": "ü"}', 90 * 86_400)

    letters = asyncio.run(read_all(bus, dead_letter_topic("writer")))
    assert [letter.value for letter in letters] == [bad_line, two_lines.value, b""]
    assert all(dict(letter.headers)["reason"] == b"insert_rejected" for letter in letters)
    assert b"UUID" in dict(letters[0].headers)["detail"]
    assert b"not exactly one" in dict(letters[1].headers)["detail"]
