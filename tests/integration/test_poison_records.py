"""One record a step raises on never stops a processor: every processor, on both buses.

Each test runs one service in-process on a real bus (the embedded log, or a Kafka broker of
this module's own: the processors' topic and group names are fixed, and the session
pipeline uses them too), patches its step to raise RuntimeError for one marked record, and
appends that record and a good one after it. The marked record must land on
``dlq.<group>`` with reason ``processing_error`` and the exception in its detail; the good
one must be processed (its output seen) and committed past. The warehouse is an in-memory
recorder: what is checked is what the processors hand it, not ClickHouse.

Last: a stream whose records all fail stops the processor with DeadLetterLimitExceeded,
before the batch that tipped it over is committed.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

import orjson
import pytest

import services.exporter.main as exporter_main
import services.notifier.main as notifier_main
import services.spans.main as spans_main
import services.writer.main as writer_main
from forgeline.blobstore.local import LocalBlobStore
from forgeline.bus.factory import create_bus
from forgeline.bus.port import Bus, OutgoingRecord, Record
from forgeline.bus.provision import ensure_topics
from forgeline.bus.topics import (
    EVENTS_ERROR_GROUPS,
    RAW_FORGE,
    RAW_MSGPACK,
    TYPED_CHECKINS,
    TYPED_ERRORS,
    TYPED_LEVEL_MODELS,
    TYPED_LOGS,
    TYPED_SPANS,
    dead_letter_topic,
)
from forgeline.notify.crypto import SecretBox, load_key
from forgeline.notify.store import TargetAdmin
from forgeline.processing.deadletter import DeadLetterLimitExceeded, DeadLetterPolicy
from services.errors.main import ErrorGrouperService
from services.errors.steps import ErrorGrouper
from services.exporter.main import Exporter
from services.monitors.main import MonitorEvaluatorService
from services.monitors.steps import Evaluator
from services.normalizer.main import Normalizer
from services.normalizer.steps import NORMALIZERS
from services.notifier.main import NotifierService, NotifyPolicy
from services.spans.main import SpanAssemblerService
from services.writer.main import Writer
from tests.fixtures.bus_io import send_all
from tests.fixtures.kafka import BUSES, DockerKafka, LocalKafka, launch_kafka
from tests.fixtures.providers import WEBHOOK_SECRET, Receivers

pytestmark = pytest.mark.integration
PARTITIONS = 2
NOW = int(time.time() * 1000)


class Service(Protocol):
    ready: bool

    async def run(self) -> None: ...

    def stop(self) -> None: ...


class RecordingWarehouse:
    """The warehouse port in memory: inserts are kept as dicts per table, reads find nothing."""

    database = "forgeline"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rows: dict[str, list[dict[str, Any]]] = defaultdict(list)

    def insert(self, table: str, rows: Sequence[Sequence[Any]], columns: Sequence[str]) -> None:
        with self._lock:
            self._rows[table] += [dict(zip(columns, row, strict=True)) for row in rows]

    def insert_columns(self, table: str, data: Sequence[Sequence[Any]], columns: Sequence[str]) -> None:
        self.insert(table, list(zip(*data, strict=True)), columns)

    def insert_json_lines(self, table: str, columns: Sequence[str], lines: bytes) -> None:
        rows = [orjson.loads(line) for line in lines.split(b"\n")]
        assert all(list(row) == list(columns) for row in rows)
        with self._lock:
            self._rows[table] += rows

    def query_rows(self, sql: str, parameters: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        return []

    def query_formatted(self, sql: str, fmt: str) -> bytes:
        return b""

    def command(self, sql: str) -> None:
        pass

    def close(self) -> None:
        pass

    def rows(self, table: str) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._rows[table])


@pytest.fixture(scope="module")
def poison_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafka | DockerKafka]:
    broker = launch_kafka(tmp_path_factory.mktemp("poison-kafka"))
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(params=BUSES)
def bus(request: pytest.FixtureRequest, tmp_path: Path) -> Bus:
    if request.param == "embedded":
        bus = create_bus(f"embedded://{tmp_path / 'bus'}", PARTITIONS)
    else:
        broker = request.getfixturevalue("poison_broker")  # started only when a Kafka case runs
        bus = create_bus(f"kafka://{broker.bootstrap}?session_timeout_ms=3000", PARTITIONS)
    asyncio.run(ensure_topics(bus))
    return bus


# --- helpers -------------------------------------------------------------------------------


async def find(bus: Bus, topic: str, marker: str, timeout_s: float = 30.0) -> Record:
    """The record of ``topic`` whose value holds ``marker`` (read without a group)."""
    reader = bus.reader([topic])
    await reader.start()
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for record in await reader.poll(1000, timeout_s=0.2):
                if marker.encode() in record.value:
                    return record
        raise AssertionError(f"no record with {marker!r} on {topic}")
    finally:
        await reader.stop()


async def committed_past(service: Service, record: Record) -> bool:
    """Whether the service's group committed past ``record`` (read through its own consumer)."""
    offset: int = await service._consumer.committed(record.tp)  # type: ignore[attr-defined]
    return offset > record.offset


async def run_until(service: Service, done: Callable[[], Awaitable[bool]], timeout_s: float = 90.0) -> None:
    task = asyncio.create_task(service.run())
    try:
        deadline = time.monotonic() + timeout_s
        while not (service.ready and await done()):
            if task.done():
                task.result()
                raise AssertionError("the service returned by itself")
            assert time.monotonic() < deadline, "not processed and committed in time"
            await asyncio.sleep(0.1)
    finally:
        service.stop()
        await asyncio.wait_for(task, 60)


def raise_for(marker: str, step: Callable[..., Any]) -> Callable[..., Any]:
    """``step``, raising RuntimeError for a record whose value holds ``marker``."""

    def poisoned(*args: Any) -> Any:
        record = next(a for a in args if isinstance(a, Record))
        if marker.encode() in record.value:
            raise RuntimeError(f"poison {marker}")
        return step(*args)

    return poisoned


def raise_for_value(marker: str, step: Callable[..., Any]) -> Callable[..., Any]:
    """Like ``raise_for`` for a step that takes a record's value (bytes) or a document."""

    def poisoned(*args: Any) -> Any:
        if any(marker.encode() in a if isinstance(a, bytes) else marker in str(a) for a in args):
            raise RuntimeError(f"poison {marker}")
        return step(*args)

    return poisoned


async def assert_dead_lettered(bus: Bus, group: str, marker: str, source_topic: str) -> None:
    letter = await find(bus, dead_letter_topic(group), marker)
    assert letter.header("reason") == b"processing_error"
    assert (letter.header("detail") or b"").startswith(f"RuntimeError: poison {marker}".encode())
    assert letter.header("source_topic") == source_topic.encode()


def pair(topic: str, poison: dict[str, Any], good: dict[str, Any]) -> list[OutgoingRecord]:
    """The poison record, then the good one, on one partition (one key): the good one waits behind."""
    return [OutgoingRecord(topic, orjson.dumps(doc), key=b"one-key") for doc in (poison, good)]


def log_doc(marker: str) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()), "legacy_id": 0, "organisation_id": "org", "project_id": "proj",
        "environment": "test", "occurred_at": NOW, "received_at": NOW, "level": "info", "message": marker,
        "fingerprint": "", "release": "",
    }  # fmt: skip


# --- one test per processor ------------------------------------------------------------------


def model_value(level: str) -> dict[str, Any]:
    """A stored level model as POST /api/models appends it (the record that crash-looped the normalizer)."""
    return {
        "v": 1, "route": "model", "id": str(uuid.uuid4()), "organisation_id": "org", "project_id": "proj",
        "environment": "production", "app_id": "app", "token_id": "tok", "received_at": NOW,
        "body": {"app_name": "game", "level_name": level, "filename": "l.glb", "content_type": "model/gltf-binary",
                 "size_bytes": 1, "sha256": "0" * 64, "storage_key": "k"},
    }  # fmt: skip


def test_normalizer(bus: Bus, monkeypatch: pytest.MonkeyPatch) -> None:
    poison, good = f"poison-{uuid.uuid4().hex}", f"good-{uuid.uuid4().hex}"
    monkeypatch.setitem(NORMALIZERS, RAW_MSGPACK, raise_for(poison, NORMALIZERS[RAW_MSGPACK]))

    async def scenario() -> None:
        await send_all(bus, pair(RAW_MSGPACK, model_value(poison), model_value(good)))
        good_record = await find(bus, RAW_MSGPACK, good)
        service = Normalizer(bus)
        await run_until(service, lambda: committed_past(service, good_record))
        await assert_dead_lettered(bus, "normalizer", poison, RAW_MSGPACK)
        typed = orjson.loads((await find(bus, TYPED_LEVEL_MODELS, good)).value)
        assert typed["level_name"] == good

    asyncio.run(scenario())


def test_writer(bus: Bus, monkeypatch: pytest.MonkeyPatch) -> None:
    poison, good = f"poison-{uuid.uuid4().hex}", f"good-{uuid.uuid4().hex}"
    monkeypatch.setattr(writer_main, "row_line", raise_for(poison, writer_main.row_line))
    warehouse = RecordingWarehouse()
    good_doc = log_doc(good)

    async def scenario() -> None:
        await send_all(bus, pair(TYPED_LOGS, log_doc(poison), good_doc))
        good_record = await find(bus, TYPED_LOGS, good)
        service = Writer(bus, warehouse, batch_rows=100, flush_seconds=0.2)

        async def done() -> bool:
            stored = any(row["event_id"] == good_doc["event_id"] for row in warehouse.rows("logs"))
            return stored and await committed_past(service, good_record)

        await run_until(service, done)
        await assert_dead_lettered(bus, "writer", poison, TYPED_LOGS)
        assert not any(row["message"] == poison for row in warehouse.rows("logs"))

    asyncio.run(scenario())


def test_errors(bus: Bus, monkeypatch: pytest.MonkeyPatch) -> None:
    poison, good = f"poison-{uuid.uuid4().hex}", f"good-{uuid.uuid4().hex}"
    monkeypatch.setattr(ErrorGrouper, "_apply_error", raise_for(poison, ErrorGrouper._apply_error))
    warehouse = RecordingWarehouse()

    def error_doc(message: str) -> dict[str, Any]:
        return {"event_id": str(uuid.uuid4()), "project_id": "proj", "organisation_id": "org", "environment": "e",
                "occurred_at": NOW, "level": "error", "message": message, "fingerprint": message,
                "exception_class": "", "release": ""}  # fmt: skip

    async def scenario() -> None:
        await send_all(bus, pair(TYPED_ERRORS, error_doc(poison), error_doc(good)))
        good_record = await find(bus, TYPED_ERRORS, good)
        service = ErrorGrouperService(bus, warehouse)

        async def done() -> bool:
            grouped = any(row["title"] == good for row in warehouse.rows("error_groups"))
            return grouped and await committed_past(service, good_record)

        await run_until(service, done)
        await assert_dead_lettered(bus, "errors", poison, TYPED_ERRORS)
        assert orjson.loads((await find(bus, EVENTS_ERROR_GROUPS, good)).value)["kind"] == "new"
        assert not any(row["title"] == poison for row in warehouse.rows("error_groups"))

    asyncio.run(scenario())


def test_spans(bus: Bus, monkeypatch: pytest.MonkeyPatch) -> None:
    poison, good = f"poison-{uuid.uuid4().hex}", f"good-{uuid.uuid4().hex}"
    monkeypatch.setattr(spans_main, "span_from_doc", raise_for_value(poison, spans_main.span_from_doc))
    warehouse = RecordingWarehouse()

    def span_doc(trace: str) -> dict[str, Any]:
        return {"project_id": "proj", "environment": "e", "trace_id": trace, "span_id": "root", "name": "GET /",
                "started_at": NOW, "duration_ms": 12, "received_at": NOW, "event_id": str(uuid.uuid4())}  # fmt: skip

    async def scenario() -> None:
        await send_all(bus, pair(TYPED_SPANS, span_doc(poison), span_doc(good)))
        good_record = await find(bus, TYPED_SPANS, good)
        service = SpanAssemblerService(bus, warehouse, quiet_s=0.1)

        async def done() -> bool:
            summarized = any(row["trace_id"] == good for row in warehouse.rows("trace_summaries"))
            return summarized and await committed_past(service, good_record)

        await run_until(service, done)
        await assert_dead_lettered(bus, "spans", poison, TYPED_SPANS)
        assert not any(row["trace_id"] == poison for row in warehouse.rows("span_tree"))

    asyncio.run(scenario())


def test_monitors(bus: Bus, monkeypatch: pytest.MonkeyPatch) -> None:
    poison, good = f"poison-{uuid.uuid4().hex}", f"good-{uuid.uuid4().hex}"
    monkeypatch.setattr(Evaluator, "_check_in", raise_for(poison, Evaluator._check_in))
    warehouse = RecordingWarehouse()

    def check_in(slug: str) -> dict[str, Any]:
        return {"event_id": str(uuid.uuid4()), "project_id": "proj", "organisation_id": "org", "environment": "e",
                "slug": slug, "status": "ok", "expected_interval_seconds": 60, "received_at": NOW}  # fmt: skip

    async def scenario() -> None:
        await send_all(bus, pair(TYPED_CHECKINS, check_in(poison), check_in(good)))
        good_record = await find(bus, TYPED_CHECKINS, good)
        service = MonitorEvaluatorService(bus, warehouse, tick_s=3600)

        async def done() -> bool:
            known = any(row["slug"] == good for row in warehouse.rows("monitor_states"))
            return known and await committed_past(service, good_record)

        await run_until(service, done)
        await assert_dead_lettered(bus, "monitors", poison, TYPED_CHECKINS)
        assert not any(row["slug"] == poison for row in warehouse.rows("monitor_states"))

    asyncio.run(scenario())


def test_exporter(bus: Bus, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    poison, good = f"poison-{uuid.uuid4().hex}", f"good-{uuid.uuid4().hex}"
    monkeypatch.setattr(exporter_main, "line_from_record", raise_for(poison, exporter_main.line_from_record))
    out = tmp_path / "exports"

    def exported() -> bytes:
        return b"".join(p.read_bytes() for p in sorted((out / "logs").rglob("*.ndjson")) if p.is_file())

    async def scenario() -> None:
        await send_all(bus, pair(TYPED_LOGS, log_doc(poison), log_doc(good)))
        good_record = await find(bus, TYPED_LOGS, good)
        store = LocalBlobStore(out, b"k", "http://x")
        service = Exporter(bus, store, max_rows=1000, max_bytes=1 << 30, flush_seconds=0.2, compress=False)

        async def done() -> bool:
            return good.encode() in exported() and await committed_past(service, good_record)

        await run_until(service, done)
        await assert_dead_lettered(bus, "exporter", poison, TYPED_LOGS)
        assert poison.encode() not in exported()

    asyncio.run(scenario())


def test_notifier(bus: Bus, monkeypatch: pytest.MonkeyPatch, receivers: Receivers, tmp_path: Path) -> None:
    poison, good = f"poison-{uuid.uuid4().hex}", f"good-{uuid.uuid4().hex}"
    monkeypatch.setattr(notifier_main, "parse", raise_for(poison, notifier_main.parse))
    box = SecretBox(load_key(tmp_path))
    project = f"proj-{uuid.uuid4().hex[:8]}"  # the Kafka broker's control topics outlive one test

    def group_doc(title: str) -> dict[str, Any]:
        return {"notification_id": str(uuid.uuid4()), "kind": "new", "project_id": project, "organisation_id": "org",
                "group_id": title, "fingerprint": title, "title": title, "exception_class": "", "level": "error",
                "event_id": "e", "occurred_at": NOW, "event_count": 1}  # fmt: skip

    async def scenario() -> None:
        async with TargetAdmin(bus, box) as admin:
            url = f"{receivers.base_url}/webhook/{project}"
            await admin.add(project, "webhook", "hook", {"url": url}, WEBHOOK_SECRET, rate=1000, allow_private=True)
        await send_all(bus, pair(EVENTS_ERROR_GROUPS, group_doc(poison), group_doc(good)))
        good_record = await find(bus, EVENTS_ERROR_GROUPS, good)
        service = NotifierService(bus, box, NotifyPolicy(max_attempts=2, backoff_s=0.05, timeout_s=10))

        def delivered() -> list[str]:
            return [item["title"] for item in receivers.items("webhook")]

        async def done() -> bool:
            return any(good in title for title in delivered()) and await committed_past(service, good_record)

        await run_until(service, done)
        await assert_dead_lettered(bus, "notifier", poison, EVENTS_ERROR_GROUPS)
        assert not any(poison in title for title in delivered())

    asyncio.run(scenario())


# --- the limit -------------------------------------------------------------------------------


def test_a_stream_that_mostly_fails_stops_the_processor_uncommitted(
    bus: Bus, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A bad deploy (every record raises): the normalizer stops loudly instead of dead-lettering it all."""
    marker = f"deploy-{uuid.uuid4().hex}"
    monkeypatch.setitem(NORMALIZERS, RAW_FORGE, raise_for(marker, NORMALIZERS[RAW_FORGE]))
    count = 60
    records = [OutgoingRecord(RAW_FORGE, orjson.dumps({"n": i, "m": marker}), key=b"k") for i in range(count)]

    async def scenario() -> int:
        await send_all(bus, records)
        last = await find(bus, RAW_FORGE, f'"n":{count - 1},"m":"{marker}"')
        service = Normalizer(bus, dead_letters=DeadLetterPolicy(max_ratio=0.5, min_records=20, window=100))
        task = asyncio.create_task(service.run())
        with pytest.raises(DeadLetterLimitExceeded, match=r"normalizer: \d+ of the last \d+ records failed"):
            await asyncio.wait_for(task, 90)
        probe = bus.consumer("normalizer", [RAW_FORGE])
        await probe.start()
        try:
            return await probe.committed(last.tp) - (last.offset + 1 - count)  # records of this test committed
        finally:
            await probe.stop()

    with caplog.at_level(logging.CRITICAL):
        committed = asyncio.run(scenario())
    # The batch that tipped it over was not committed: those records wait for a fixed version.
    assert committed < count
    assert any("dead-letter limit exceeded" in r.getMessage() for r in caplog.records if r.levelname == "CRITICAL")
