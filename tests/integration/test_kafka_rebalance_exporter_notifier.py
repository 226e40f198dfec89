"""Two exporters, then two notifiers, in one consumer group on Kafka, with rebalances mid-stream.

Partitions move while a replica holds buffered rows or a batch of deliveries: the revocation
waits for the batch in flight, then writes and commits what the replica holds, and the next
owner starts right after it. No NDJSON line is lost or written twice; no notification is
lost or sent twice.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, cast

import orjson
import pytest

from forgeline.blobstore.local import LocalBlobStore
from forgeline.bus.factory import create_bus
from forgeline.bus.port import OutgoingRecord
from forgeline.bus.provision import ensure_topics
from forgeline.bus.topics import CONTROL_EXPORTER, EVENTS_ERROR_GROUPS, TYPED_LOGS
from forgeline.notify.crypto import SecretBox, load_key
from forgeline.notify.store import TargetAdmin
from services.exporter.main import Exporter, ExportStrategy
from services.notifier.main import NotifierService, NotifyPolicy
from tests.fixtures.bus_io import send_all
from tests.fixtures.kafka import LocalKafka
from tests.fixtures.providers import WEBHOOK_SECRET, Receivers

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("kafka")]


def _log_rows(release: str, start: int, count: int) -> list[OutgoingRecord]:
    now = int(time.time() * 1000)
    out = []
    for i in range(start, start + count):
        row: dict[str, Any] = {
            "event_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{release}/{i}")),
            "legacy_id": i, "organisation_id": "org", "project_id": "proj", "environment": "test",
            "occurred_at": now, "received_at": now, "level": "info", "message": f"line {i}", "fingerprint": "",
            "release": release,
        }  # fmt: skip
        out.append(OutgoingRecord(TYPED_LOGS, orjson.dumps(row), key=row["event_id"].encode()))
    return out


async def _until(what: str, condition: Callable[[], Awaitable[bool] | bool], timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        result = condition()
        if await result if not isinstance(result, bool) else result:
            return
        assert time.monotonic() < deadline, f"not reached in time: {what}"
        await asyncio.sleep(0.1)


def _exported_ids(root: Path, release: str) -> list[str]:
    ids = []
    for path in sorted(root.rglob("*.ndjson")):
        for line in path.read_bytes().splitlines():
            row = orjson.loads(line)
            if row.get("release") == release:
                ids.append(row["event_id"])
    return ids


def _buffered(exporter: Exporter) -> int:
    return cast(ExportStrategy, exporter.strategy)._rows  # private, test only: rows held, unwritten


def test_two_exporters_rebalanced_mid_stream_write_each_line_once(own_kafka: LocalKafka, tmp_path: Path) -> None:
    release = f"export-{uuid.uuid4()}"
    out = tmp_path / "exports"

    async def scenario() -> None:
        bus = create_bus(f"kafka://{own_kafka.bootstrap}?session_timeout_ms=3000", 4)
        await ensure_topics(bus)
        store = LocalBlobStore(out, b"k", "http://x")

        def exporter() -> Exporter:
            # Nothing flushes on its own within the test: only rebalances, stops and requests.
            return Exporter(bus, store, max_rows=1_000_000, max_bytes=1 << 30, flush_seconds=3600, compress=False)

        first, second = exporter(), exporter()
        first_task = asyncio.create_task(first.run())
        await send_all(bus, _log_rows(release, 0, 1000))
        await _until("the first exporter buffered 1000 rows", lambda: _buffered(first) == 1000)
        assert _exported_ids(out, release) == []

        # A second replica joins: the first's buffered rows are written and committed before
        # its partitions move, so the second does not export them again.
        second_task = asyncio.create_task(second.run())
        a, b = first._consumer, second._consumer
        await _until("both replicas own partitions", lambda: bool(a.assignment() and b.assignment()))
        assert len(_exported_ids(out, release)) == 1000
        await send_all(bus, _log_rows(release, 1000, 1000))
        await _until("the new rows are buffered", lambda: _buffered(first) + _buffered(second) == 1000)

        # The first leaves (flush, commit, leave): the second takes every partition over.
        first.stop()
        await first_task
        await send_all(bus, _log_rows(release, 2000, 1000))
        # Flush requests until every line is out: a line lost (committed, never written) never
        # shows up, and a busy broker's late rebalance only delays the count.
        deadline = time.monotonic() + 90
        while len(_exported_ids(out, release)) < 3000 and time.monotonic() < deadline:
            await send_all(bus, [OutgoingRecord(CONTROL_EXPORTER, b'{"v":1,"action":"flush"}')])
            await asyncio.sleep(1.0)
        second.stop()
        await second_task

    asyncio.run(scenario())
    ids = _exported_ids(out, release)
    duplicated = [i for i, n in Counter(ids).items() if n > 1]
    assert not duplicated, f"{len(duplicated)} lines written twice"
    assert len(set(ids)) == 3000


def _error_doc(run: str, i: int) -> dict[str, Any]:
    return {
        "notification_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{run}/{i}")), "kind": "new", "project_id": "proj-1",
        "organisation_id": "org", "group_id": f"{run}-g{i}", "fingerprint": f"fp{i}", "title": f"boom {i}",
        "exception_class": "ValueError", "level": "error", "event_id": f"e{i}", "occurred_at": 1_700_000_000_000 + i,
        "event_count": 1,
    }  # fmt: skip


def test_two_notifiers_rebalanced_mid_stream_send_each_notification_once(
    own_kafka: LocalKafka, tmp_path: Path, receivers: Receivers
) -> None:
    run = str(uuid.uuid4())
    box = SecretBox(load_key(tmp_path))
    # Slow deliveries (20 a second, and retried 503s at first): a batch is always in flight
    # when partitions move or a replica stops.
    receivers.script("/webhook", [503] * 20)
    policy = NotifyPolicy(max_attempts=10, backoff_s=0.05, backoff_max_s=0.2, timeout_s=30.0)

    async def scenario() -> None:
        bus = create_bus(f"kafka://{own_kafka.bootstrap}?session_timeout_ms=3000", 4)
        await ensure_topics(bus)
        async with TargetAdmin(bus, box) as admin:
            await admin.add("proj-1", "webhook", "hook", {"url": f"{receivers.base_url}/webhook/main"},
                            WEBHOOK_SECRET, rate=20.0, allow_private=True)  # fmt: skip

        def notifier() -> NotifierService:
            return NotifierService(bus, box, policy, batch=10)

        first, second = notifier(), notifier()
        first_task = asyncio.create_task(first.run())
        await _until("the first notifier is ready", lambda: first.ready)
        docs = [_error_doc(run, i) for i in range(120)]
        await send_all(bus, [OutgoingRecord(EVENTS_ERROR_GROUPS, orjson.dumps(d), key=d["group_id"].encode())
                          for d in docs[:60]])  # fmt: skip
        await _until("deliveries started", lambda: receivers.count("webhook") >= 5)
        second_task = asyncio.create_task(second.run())
        a, b = first._consumer, second._consumer
        await _until("both replicas own partitions", lambda: bool(a.assignment() and b.assignment()))
        await send_all(bus, [OutgoingRecord(EVENTS_ERROR_GROUPS, orjson.dumps(d), key=d["group_id"].encode())
                          for d in docs[60:]])  # fmt: skip
        await _until("deliveries went on", lambda: receivers.count("webhook") >= 80)
        first.stop()  # leaves mid-stream: the second takes its partitions over
        await first_task
        await _until("every notification delivered", lambda: receivers.count("webhook") >= 120, timeout_s=90)
        await _until("everything committed", lambda: _settled(second))
        second.stop()
        await second_task

    asyncio.run(scenario())
    titles = Counter(item["title"] for item in receivers.items("webhook"))
    assert sum(titles.values()) == 120 and len(titles) == 120, [t for t, n in titles.items() if n > 1]
    # The receiver drops a repeated Idempotency-Key, so count what reached it: each notification
    # once, plus the 20 scripted failures (retried, not sent twice).
    resent = {key: n for key, n in receivers.webhook_keys.items() if n > 1}
    assert receivers.arrivals["webhook"] == 120 + 20, f"sent twice: {len(resent)} keys, {resent}"


async def _settled(service: NotifierService) -> bool:
    return await service.lag() == 0
