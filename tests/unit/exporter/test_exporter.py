"""The exporter loop on a real embedded bus and a real local store: crash replay, ticks, flush requests."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest

from forgeline.blobstore.local import LocalBlobStore
from forgeline.bus.embedded import EmbeddedBus
from forgeline.bus.port import OutgoingRecord, TopicPartition
from forgeline.bus.topics import CONTROL_EXPORTER, FIXED_PARTITIONS, TICK_HEADER, TYPED_CHECKINS, TYPED_ERRORS
from forgeline.schemas.records import ERROR
from forgeline.schemas.typed import typed_record
from forgeline.telemetry.metrics import EXPORTER_FLUSHES, EXPORTER_REQUESTS
from services.exporter.files import read_lines
from services.exporter.main import GROUP, Exporter

pytestmark = pytest.mark.unit

HOUR = 3_600_000
BASE = 1_763_856_000_000  # 2025-11-23 00:00:00 UTC


def error_doc(i: int) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()), "legacy_id": i, "organisation_id": "org", "project_id": "p",
        "environment": "production", "occurred_at": BASE + (i % 3) * HOUR + i, "received_at": BASE + 3 * HOUR,
        "level": "error", "message": f"boom {i}", "fingerprint": "f", "exception_class": "E", "release": "1",
        "trace_id": "", "request_id": "", "session_id": "", "user_id": "", "context": "{}",
    }  # fmt: skip


def checkin_doc(i: int) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()), "legacy_id": 0, "organisation_id": "org", "project_id": "p",
        "environment": "production", "occurred_at": BASE + i, "received_at": BASE + i, "slug": "nightly",
        "status": "ok", "expected_interval_seconds": 60, "duration_ms": None, "source": "http", "release": "",
        "trace_id": "", "request_id": "", "context": "{}",
    }  # fmt: skip


async def append(bus: EmbeddedBus, records: list[OutgoingRecord]) -> None:
    producer = bus.producer()
    await producer.start()
    await producer.send_many(records)
    await producer.stop()


def errors(n: int) -> list[OutgoingRecord]:
    """Typed records as the normalizer writes them, every third one in the older format (a log
    written before format 2): both make the same kind of line."""
    return [
        OutgoingRecord(TYPED_ERRORS, orjson.dumps(error_doc(i)), key=f"k{i}".encode())
        if i % 3 == 2
        else typed_record(ERROR, error_doc(i), f"k{i}".encode())
        for i in range(n)
    ]


def exported(root: Path, table: str) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted((root / table).rglob("*")) if p.is_file()}


async def run_until(exporter: Exporter, done: Any, timeout_s: float = 30.0) -> None:
    task = asyncio.create_task(exporter.run())
    deadline = time.monotonic() + timeout_s
    while not done() and time.monotonic() < deadline and not task.done():
        await asyncio.sleep(0.05)
    exporter.stop()
    await task


async def committed(bus: EmbeddedBus, tp: TopicPartition) -> int:
    consumer = bus.consumer(GROUP, [tp.topic])
    await consumer.start()
    try:
        return await consumer.committed(tp)
    finally:
        await consumer.stop()


def test_ticks_are_skipped_and_committed(tmp_path: Path) -> None:
    bus = EmbeddedBus(tmp_path / "bus", default_partitions=1)
    tick = OutgoingRecord(TYPED_CHECKINS, b'{"tick": 1}', headers=((TICK_HEADER, b"1"),))
    records = [tick]
    for i in range(20):
        records += [OutgoingRecord(TYPED_CHECKINS, orjson.dumps(checkin_doc(i))), tick]
    asyncio.run(append(bus, records))
    out = tmp_path / "exports"
    exporter = Exporter(
        bus, LocalBlobStore(out, b"k", "http://x"), max_rows=1000, max_bytes=1 << 30, flush_seconds=0.1, compress=False
    )
    tp = TopicPartition(TYPED_CHECKINS, 0)
    asyncio.run(run_until(exporter, lambda: bool(exported(out, "check_ins"))))
    files = exported(out, "check_ins")
    assert list(files) == ["check_ins/date=2025-11-23/hour=00/0-1-40.ndjson"]  # first data record 1, last tick 40
    rows = read_lines(next(iter(files.values())))
    assert [r["occurred_at"] for r in rows] == [1_763_856_000 + i / 1000 for i in range(20)]  # epoch seconds
    assert asyncio.run(committed(bus, tp)) == 41


def test_flush_requests_flush_at_once_and_coalesce(tmp_path: Path) -> None:
    bus = EmbeddedBus(tmp_path / "bus", default_partitions=2, partitions=FIXED_PARTITIONS)
    requests = [OutgoingRecord(CONTROL_EXPORTER, b'{"v":1,"action":"flush"}') for _ in range(5)]
    asyncio.run(append(bus, errors(10) + requests))
    flushed = EXPORTER_REQUESTS.labels(outcome="flushed")._value.get()
    coalesced = EXPORTER_REQUESTS.labels(outcome="coalesced")._value.get()
    by_request = EXPORTER_FLUSHES.labels(reason="request")._value.get()
    out = tmp_path / "exports"
    # Neither the row limit nor the timer would flush within the test.
    exporter = Exporter(
        bus, LocalBlobStore(out, b"k", "http://x"), max_rows=10_000, max_bytes=1 << 30, flush_seconds=3600,
        compress=True,
    )  # fmt: skip
    lines = lambda: sum(len(read_lines(b)) for b in exported(out, "errors").values())  # noqa: E731
    asyncio.run(run_until(exporter, lambda: lines() >= 10))
    assert lines() == 10
    assert all(key.endswith(".ndjson.gz") for key in exported(out, "errors"))
    assert EXPORTER_FLUSHES.labels(reason="request")._value.get() == by_request + 1
    assert EXPORTER_REQUESTS.labels(outcome="flushed")._value.get() == flushed + 1
    assert EXPORTER_REQUESTS.labels(outcome="coalesced")._value.get() == coalesced + 4
    assert asyncio.run(committed(bus, TopicPartition(CONTROL_EXPORTER, 0))) == 5


def test_the_local_store_puts_durably_outside_the_key_directories(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "s", b"k", "http://x")
    store.put("errors/date=2025-11-23/hour=01/0-5-9.ndjson", b"a\n", "application/x-ndjson")
    store.put("errors/date=2025-11-23/hour=01/0-50-59.ndjson", b"b\n", "application/x-ndjson")
    assert store.put("spans/x.ndjson", b"c\n", "application/x-ndjson").size == 2
    keys = [info.key for info in store.list_objects("errors/date=2025-11-23/hour=01/0-5-")]
    assert keys == ["errors/date=2025-11-23/hour=01/0-5-9.ndjson"]
    assert store.get("spans/x.ndjson") == b"c\n"
    assert list((tmp_path / "s" / ".tmp").iterdir()) == []  # no temp file outlives a put
    assert not [p for p in (tmp_path / "s" / "errors").rglob("*") if p.name.startswith(".")]


def test_temp_files_of_killed_puts_are_removed_once_stale(tmp_path: Path) -> None:
    temp = tmp_path / "s" / ".tmp"
    temp.mkdir(parents=True)
    stale, fresh = temp / "a.part", temp / "b.part"
    stale.write_bytes(b"half"), fresh.write_bytes(b"half")
    os.utime(stale, (time.time() - 7200, time.time() - 7200))
    store = LocalBlobStore(tmp_path / "s", b"k", "http://x")
    assert not stale.exists() and fresh.exists()
    assert store.list_objects("") == []
