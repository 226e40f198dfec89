"""Bench scenarios `bus`, `writer` and `exporter`: our stage in process vs the raw operation beneath it."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from pathlib import Path

import orjson

from services.bench.harness import Row
from services.bench.payloads import event_body, typed_error


def bench_bus(root: Path, total: int) -> list[Row]:
    """Embedded log group-committed appends vs raw write+fsync of the same batches."""
    from forgeline.bus.embedded import EmbeddedBus
    from forgeline.bus.port import OutgoingRecord

    value = event_body()
    batch = 100

    async def ours() -> float:
        bus = EmbeddedBus(root / "bus", default_partitions=1)
        producer = bus.producer()
        await producer.start()
        records = [OutgoingRecord("bench", value, key=b"k") for _ in range(batch)]
        started = time.perf_counter()
        for _ in range(total // batch):
            await producer.send_many(records)
        elapsed = time.perf_counter() - started
        await producer.stop()
        return total / elapsed

    def raw() -> float:
        path = root / "raw.log"
        chunk = b"".join(len(value).to_bytes(4, "big") + value for _ in range(batch))
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        started = time.perf_counter()
        try:
            for _ in range(total // batch):
                os.write(fd, chunk)
                os.fsync(fd)
        finally:
            os.close(fd)
        return total / (time.perf_counter() - started)

    baseline = raw()
    mine = asyncio.run(ours())
    return [
        Row(
            f"bus: embedded append, batches of {batch} (fsync each) vs raw append+fsync",
            mine,
            baseline,
            "records/s",
            "≥ 0.50",
            f"{len(value)}-byte records",
        )
    ]


def bench_writer(root: Path, total: int) -> list[Row]:
    """The writer (typed records → rows → insert → commit) vs a raw clickhouse-connect insert."""
    from prometheus_client import REGISTRY

    from forgeline.bus.embedded import EmbeddedBus
    from forgeline.schemas.records import ERROR
    from forgeline.schemas.typed import typed_record
    from forgeline.warehouse.client import ClickHouseWarehouse
    from forgeline.warehouse.migrations import migrate
    from services.writer.main import Writer

    warehouse = ClickHouseWarehouse(f"chdb://{root / 'warehouse'}")
    migrate(warehouse)
    bus = EmbeddedBus(root / "writer-bus", default_partitions=2)
    now = int(time.time() * 1000)
    docs = [typed_error(i, now) for i in range(total)]
    batch_rows = 5000

    async def fill() -> None:
        producer = bus.producer()
        await producer.start()
        for start in range(0, total, 1000):
            await producer.send_many(
                [typed_record(ERROR, d, str(d["event_id"]).encode()) for d in docs[start : start + 1000]]
            )
        await producer.stop()

    asyncio.run(fill())

    async def ours() -> float:
        writer = Writer(bus, warehouse, batch_rows=batch_rows, flush_seconds=0.2)
        task = asyncio.create_task(writer.run())
        started = time.perf_counter()
        # Watch the writer's own counter: polling count() would contend for chDB's lock.
        while (REGISTRY.get_sample_value("forgeline_writer_rows_inserted_total", {"table": "errors"}) or 0) < total:
            await asyncio.sleep(0.01)
        elapsed = time.perf_counter() - started
        writer.stop()
        await task
        stored = warehouse.query_rows("SELECT count() FROM forgeline.errors FINAL")[0][0]
        if stored != total:
            raise RuntimeError(f"writer benchmark stored {stored} rows, expected {total}")
        return total / elapsed

    mine = asyncio.run(ours())

    # Baselines: the same rows in the same batch size, with nothing of ours around them —
    # clickhouse-connect's usual row-oriented insert (the "raw insert"), and its
    # fastest path, the rows already transposed to columns (stricter still).
    # The typed rows already hold the cells clickhouse-connect takes (epoch ms as DateTime64 ticks).
    rows = [tuple({**d, "project_id": "raw"}[name] for name in ERROR.column_names) for d in docs]
    columns = [list(column) for column in zip(*rows, strict=True)]

    def raw_rate(insert_chunk: Callable[[int], None]) -> float:
        started = time.perf_counter()
        for start in range(0, total, batch_rows):
            insert_chunk(start)
        return total / (time.perf_counter() - started)

    by_rows = raw_rate(lambda start: warehouse.insert("errors", rows[start : start + batch_rows], ERROR.column_names))
    by_columns = raw_rate(
        lambda start: warehouse.insert_columns(
            "errors", [column[start : start + batch_rows] for column in columns], ERROR.column_names
        )
    )
    warehouse.close()
    scenario = f"writer: bus → JSONEachRow lines → chDB insert → commit, batches of {batch_rows}"
    skipped = "the baseline skips the bus read and the checks"
    return [
        Row(f"{scenario} vs raw row insert", mine, by_rows, "rows/s", "≥ 0.80", skipped),
        Row(f"{scenario} vs raw columnar insert", mine, by_columns, "rows/s", "(stricter)", skipped),
    ]


def bench_exporter(root: Path, total: int) -> list[Row]:
    """The exporter (bus → rows → NDJSON files, fsync'd, committed) vs orjson dumps + write of the rows."""
    from forgeline.blobstore.local import LocalBlobStore
    from forgeline.bus.embedded import EmbeddedBus
    from forgeline.schemas.records import ERROR
    from forgeline.schemas.typed import typed_record
    from forgeline.telemetry.metrics import EXPORTER_LINES
    from services.exporter.main import Exporter

    bus = EmbeddedBus(root / "bus", default_partitions=4)
    now = int(time.time() * 1000)
    values = [typed_record(ERROR, typed_error(i, now), b"") for i in range(total)]
    max_rows = 50_000

    async def fill() -> None:
        producer = bus.producer()
        await producer.start()
        for start in range(0, total, 1000):
            await producer.send_many(
                [v._replace(key=str(n).encode()) for n, v in enumerate(values[start : start + 1000])]
            )
        await producer.stop()

    asyncio.run(fill())

    async def ours(compress: bool) -> float:
        store = LocalBlobStore(root / f"exports-{compress}", b"bench", "http://127.0.0.1")
        exporter = Exporter(bus, store, max_rows=max_rows, max_bytes=1 << 30, flush_seconds=0.5, compress=compress)
        lines = EXPORTER_LINES.labels(table="errors")
        before = lines._value.get()
        task = asyncio.create_task(exporter.run())
        started = time.perf_counter()
        while lines._value.get() - before < total:
            await asyncio.sleep(0.01)
        elapsed = time.perf_counter() - started
        exporter.stop()
        await task
        return total / elapsed

    def reset() -> None:
        for offset_file in (root / "bus" / "groups" / "exporter").glob("*.offset"):
            offset_file.unlink()

    plain = asyncio.run(ours(False))
    reset()
    gzipped = asyncio.run(ours(True))

    # Baseline: the same rows, already converted, dumped and written in the same file sizes.
    rows = [orjson.loads(v.value) for v in values]
    started = time.perf_counter()
    for n, start in enumerate(range(0, total, max_rows)):
        data = b"".join(orjson.dumps(r, option=orjson.OPT_APPEND_NEWLINE) for r in rows[start : start + max_rows])
        fd = os.open(root / f"raw-{n}.ndjson", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
    baseline = total / (time.perf_counter() - started)
    return [
        Row(
            f"exporter: bus → NDJSON files (atomic, fsync'd, committed), flushes of {max_rows} vs orjson dumps+write",
            plain,
            baseline,
            "lines/s",
            "≥ 0.30",
            "baseline skips reading the bus, decoding and converting records",
        ),
        Row(
            "exporter: the same with gzip vs orjson dumps+write (uncompressed)",
            gzipped,
            baseline,
            "lines/s",
            "report",
        ),
    ]
