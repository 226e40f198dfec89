"""The writer service: typed.* and dlq.* → warehouse tables, in batches, at least once.

Records are buffered until ``batch_rows`` or ``flush_seconds``; then every table's rows
are inserted and only after all inserts succeeded are the offsets committed. A replay
re-inserts identical rows, which the ReplacingMergeTree tables collapse (same event id).

Failures: a retriable warehouse error backs off and retries the same batch (nothing is
committed meanwhile, and the buffer does not grow); a non-retriable one is bisected down
to the rows that fail alone, which go to ``dlq.writer`` so they never block a partition.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from forgeline.bus.port import Bus, BusUnavailable, OutgoingRecord, Record
from forgeline.bus.topics import TICK_HEADER, dead_letter_topic
from forgeline.processing.deadletter import InvalidMessage, dead_letter
from forgeline.processing.loop import LagReporter, backoff, count_consumed, next_offsets
from forgeline.schemas.records import KINDS_BY_TOPIC
from forgeline.telemetry.metrics import (
    PROCESSOR_BATCH_SIZE,
    PROCESSOR_DEAD_LETTERS,
    PROCESSOR_RETRIES,
    WRITER_INSERT_LATENCY,
    WRITER_ROWS,
)
from forgeline.warehouse.port import Warehouse, WarehouseError
from services.writer.steps import DEAD_LETTER_COLUMNS, dead_letter_row, is_dead_letter_topic, typed_row

GROUP = "writer"
DEAD_LETTER_SOURCES = (dead_letter_topic("normalizer"), dead_letter_topic(GROUP), dead_letter_topic("notifier"))
log = logging.getLogger(__name__)


@dataclass
class _TableBatch:
    columns: list[str]
    rows: list[tuple[Any, ...]] = field(default_factory=list)
    sources: list[Record] = field(default_factory=list)


@dataclass
class _Batch:
    records: list[Record] = field(default_factory=list)
    tables: dict[str, _TableBatch] = field(default_factory=dict)
    dead: list[OutgoingRecord] = field(default_factory=list)
    opened_at: float = 0.0

    def add(self, record: Record) -> None:
        if not self.records:
            self.opened_at = time.monotonic()
        self.records.append(record)
        if record.header(TICK_HEADER) is not None:
            return  # a stream-clock tick (services/monitors) has no row; it commits with the batch
        try:
            if is_dead_letter_topic(record.topic):
                table, columns, row = "dead_letters", DEAD_LETTER_COLUMNS, dead_letter_row(record)
            else:
                table, columns, row = typed_row(record)
        except InvalidMessage as err:
            self.reject(record, err)
            return
        batch = self.tables.setdefault(table, _TableBatch(columns))
        batch.rows.append(row)
        batch.sources.append(record)

    def reject(self, record: Record, err: InvalidMessage) -> None:
        PROCESSOR_DEAD_LETTERS.labels(service=GROUP, reason=err.reason).inc()
        log.warning("dead-lettered", extra={"reason": err.reason, "topic": record.topic, "offset": record.offset})
        self.dead.append(dead_letter(GROUP, record, err))


class Writer:
    def __init__(self, bus: Bus, warehouse: Warehouse, batch_rows: int, flush_seconds: float) -> None:
        self._consumer = bus.consumer(GROUP, [*KINDS_BY_TOPIC, *DEAD_LETTER_SOURCES])
        self._producer = bus.producer()
        self._warehouse = warehouse
        self._batch_rows = batch_rows
        self._flush_seconds = flush_seconds
        self._stopping = asyncio.Event()
        self.ready = False

    def stop(self) -> None:
        self._stopping.set()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    async def run(self) -> None:
        await self._producer.start()
        await self._consumer.start()
        lag = LagReporter(GROUP, self._consumer)
        batch = _Batch()
        self.ready = True
        try:
            while not self._stopping.is_set():
                room = self._batch_rows - len(batch.records)
                wait = 0.2
                if batch.records:
                    wait = max(0.0, min(wait, batch.opened_at + self._flush_seconds - time.monotonic()))
                records = await self._consumer.poll(room, timeout_s=wait)
                count_consumed(GROUP, records)
                for record in records:
                    batch.add(record)
                due = batch.opened_at + self._flush_seconds <= time.monotonic()
                if batch.records and (len(batch.records) >= self._batch_rows or due):
                    await self._flush(batch)
                    batch = _Batch()
                await lag.maybe_report({})
            if batch.records:
                # Graceful stop: write and commit what is buffered before leaving.
                await self._flush(batch)
        finally:
            self.ready = False
            await self._consumer.stop()
            await self._producer.stop()

    async def _flush(self, batch: _Batch) -> None:
        PROCESSOR_BATCH_SIZE.labels(service=GROUP).observe(len(batch.records))
        for table, table_batch in batch.tables.items():
            await self._insert(table, table_batch, batch)
        if batch.dead:
            await self._send_dead_letters(batch.dead)
        await self._consumer.commit(next_offsets(batch.records))

    async def _insert(self, table: str, tb: _TableBatch, batch: _Batch) -> None:
        attempt = 0
        while True:
            try:
                await self._insert_or_bisect(table, tb.columns, tb.rows, tb.sources, batch)
                return
            except WarehouseError as err:
                if self._stopping.is_set():
                    raise
                PROCESSOR_RETRIES.labels(service=GROUP, reason="warehouse").inc()
                log.warning("insert failed; retrying", extra={"table": table, "error": str(err)[:500]})
                await backoff(attempt)
                attempt += 1

    async def _insert_or_bisect(
        self,
        table: str,
        columns: list[str],
        rows: list[tuple[Any, ...]],
        sources: list[Record],
        batch: _Batch,
    ) -> None:
        started = time.perf_counter()
        try:
            await asyncio.to_thread(self._warehouse.insert, table, rows, columns)
        except WarehouseError as err:
            if err.retriable:
                raise
            if len(rows) == 1:
                batch.reject(sources[0], InvalidMessage("insert_rejected", str(err)[:1000]))
                return
            middle = len(rows) // 2
            await self._insert_or_bisect(table, columns, rows[:middle], sources[:middle], batch)
            await self._insert_or_bisect(table, columns, rows[middle:], sources[middle:], batch)
            return
        WRITER_INSERT_LATENCY.labels(table=table).observe(time.perf_counter() - started)
        WRITER_ROWS.labels(table=table).inc(len(rows))

    async def _send_dead_letters(self, dead: list[OutgoingRecord]) -> None:
        attempt = 0
        while True:
            try:
                await self._producer.send_many(dead)
                return
            except BusUnavailable:
                PROCESSOR_RETRIES.labels(service=GROUP, reason="bus").inc()
                await backoff(attempt)
                attempt += 1
