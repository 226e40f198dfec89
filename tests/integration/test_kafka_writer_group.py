"""Two writers in one consumer group on Kafka split the partitions and write every row once.

Both run in this process on one chDB warehouse (chDB allows one engine per process; a
ClickHouse server would let them be separate processes, which is what production does).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import orjson
import pytest

from forgeline.bus.factory import create_bus
from forgeline.bus.port import OutgoingRecord
from forgeline.bus.provision import ensure_topics
from forgeline.bus.topics import TYPED_LOGS
from forgeline.warehouse.client import ClickHouseWarehouse
from forgeline.warehouse.migrations import migrate
from services.writer.main import Writer
from tests.fixtures.bus_io import send_all
from tests.fixtures.kafka import LocalKafka

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("kafka")]


def _log_rows(release: str, start: int, count: int) -> list[OutgoingRecord]:
    now = int(time.time() * 1000)
    out = []
    for i in range(start, start + count):
        row = {
            "event_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{release}/{i}")),
            "legacy_id": i,
            "organisation_id": "org",
            "project_id": "proj",
            "environment": "test",
            "occurred_at": now,
            "received_at": now,
            "level": "info",
            "message": f"line {i}",
            "fingerprint": "",
            "release": release,
        }
        out.append(OutgoingRecord(TYPED_LOGS, orjson.dumps(row), key=row["event_id"].encode()))
    return out


def test_two_writers_in_one_group_split_partitions_and_write_each_row_once(
    own_kafka: LocalKafka, tmp_path: Path
) -> None:
    release = f"group-{uuid.uuid4()}"
    warehouse = ClickHouseWarehouse(f"chdb://{tmp_path / 'warehouse'}")
    migrate(warehouse)
    where = f"FROM forgeline.logs FINAL WHERE release = '{release}'"

    def count() -> int:
        return int(warehouse.query_rows(f"SELECT count() {where}")[0][0])

    async def wait_count(expected: int, timeout_s: float = 60) -> int:
        deadline = time.monotonic() + timeout_s
        while (n := await asyncio.to_thread(count)) < expected and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        return n

    async def scenario() -> tuple[int, set[object], set[object]]:
        bus = create_bus(f"kafka://{own_kafka.bootstrap}?session_timeout_ms=3000", 4)
        await ensure_topics(bus)
        first = Writer(bus, warehouse, batch_rows=500, flush_seconds=0.3)
        second = Writer(bus, warehouse, batch_rows=500, flush_seconds=0.3)
        first_task = asyncio.create_task(first.run())
        await send_all(bus, _log_rows(release, 0, 2000))
        assert await wait_count(2000) == 2000

        second_task = asyncio.create_task(second.run())
        # Private access, test only: which partitions each writer owns.
        a, b = first._consumer, second._consumer

        # The second member can report its share before the first has given its
        # old one up (the rebalance is still settling): wait for a split.
        def settled() -> bool:
            owned_a, owned_b = a.assignment(), b.assignment()
            return bool(owned_a and owned_b and owned_a.isdisjoint(owned_b))

        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not settled():
            await asyncio.sleep(0.1)
        owned_a, owned_b = set(a.assignment()), set(b.assignment())
        await send_all(bus, _log_rows(release, 2000, 2000))
        assert await wait_count(4000) == 4000

        # One writer leaves gracefully (flush, commit, leave): the other takes over.
        first.stop()
        await first_task
        await send_all(bus, _log_rows(release, 4000, 1000))
        total = await wait_count(5000)
        second.stop()
        await second_task
        return total, owned_a, owned_b

    try:
        total, owned_a, owned_b = asyncio.run(scenario())
        assert owned_a and owned_b and owned_a.isdisjoint(owned_b)
        logs_a = {tp.partition for tp in owned_a if tp.topic == TYPED_LOGS}
        logs_b = {tp.partition for tp in owned_b if tp.topic == TYPED_LOGS}
        assert logs_a and logs_b and logs_a | logs_b == {0, 1, 2, 3}
        assert total == 5000
        assert int(warehouse.query_rows(f"SELECT uniqExact(event_id) {where}")[0][0]) == 5000
    finally:
        warehouse.close()
