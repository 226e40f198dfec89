"""The exporter on both blob-store adapters (a local directory, a bucket on the test S3 server):
a crash in the middle of a flush is replayed into the same objects, whatever the flush settings."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from forgeline.blobstore.port import BlobStore, StoredObject
from forgeline.bus.embedded import EmbeddedBus
from forgeline.bus.port import TopicPartition
from forgeline.bus.topics import TYPED_ERRORS
from forgeline.telemetry.metrics import EXPORTER_FLUSHES
from services.exporter.files import parse_name, read_lines
from services.exporter.main import Exporter
from tests.unit.exporter.test_exporter import append, committed, errors, run_until

pytestmark = pytest.mark.integration


class Crash(BaseException):
    """Stands for kill -9: nothing after it runs, nothing is retried."""


class CrashAfter:
    """The store, until ``puts`` objects were written; then the process "dies"."""

    def __init__(self, inner: BlobStore, puts: int) -> None:
        self.inner = inner
        self.capabilities = inner.capabilities
        self.left = puts

    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> StoredObject:
        if self.left == 0:
            raise Crash
        self.left -= 1
        return self.inner.put(key, data, content_type)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def objects(store: BlobStore, table: str) -> dict[str, bytes]:
    return {info.key: store.get(info.key) for info in store.list_objects(f"{table}/")}


@pytest.mark.parametrize("compress_after", [False, True])
def test_a_crash_mid_flush_is_replayed_into_the_same_objects(
    tmp_path: Path, blob_store: BlobStore, compress_after: bool
) -> None:
    bus = EmbeddedBus(tmp_path / "bus", default_partitions=2)
    asyncio.run(append(bus, errors(300)))
    replays = EXPORTER_FLUSHES.labels(reason="replay")._value.get()

    # Flushes of ~40 rows over 2 partitions × 3 hours: the crash lands inside the first flush.
    crashing = Exporter(bus, CrashAfter(blob_store, 5), max_rows=40, max_bytes=1 << 30, flush_seconds=60,
                        compress=False)  # fmt: skip
    with pytest.raises(Crash):
        asyncio.run(run_until(crashing, lambda: False))
    before = objects(blob_store, "errors")
    assert len(before) == 5
    assert all(asyncio.run(committed(bus, TopicPartition(TYPED_ERRORS, p))) == 0 for p in range(2))

    # Restart with other flush settings: the interrupted range is still written as it was.
    lines = lambda: sum(len(read_lines(b)) for b in objects(blob_store, "errors").values())  # noqa: E731
    again = Exporter(bus, blob_store, max_rows=10_000, max_bytes=1 << 30, flush_seconds=0.2, compress=compress_after)
    asyncio.run(run_until(again, lambda: lines() >= 300))  # stopping flushes whatever else is buffered
    after = objects(blob_store, "errors")
    for key, data in before.items():
        assert after[key] == data  # same name, same bytes
    ids = Counter(row["event_id"] for data in after.values() for row in read_lines(data))
    assert len(ids) == 300 and set(ids.values()) == {1}
    assert EXPORTER_FLUSHES.labels(reason="replay")._value.get() > replays
    # Ranges of one partition never overlap; files of one range share it.
    for p in range(2):
        ranges = sorted({(n.first, n.last) for n in map(parse_name, after) if n and n.partition == p})
        assert all(a[1] < b[0] for a, b in zip(ranges, ranges[1:], strict=False)), ranges
    assert all(asyncio.run(committed(bus, TopicPartition(TYPED_ERRORS, p))) > 0 for p in range(2))
