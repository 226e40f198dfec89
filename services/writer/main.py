"""The writer service: typed.* and dlq.* → warehouse tables, in batches, at least once.

Records are buffered until ``batch_rows`` or ``flush_seconds``; then every table's rows
are inserted and only after all inserts succeeded are the offsets committed. A replay
re-inserts identical rows, which the ReplacingMergeTree tables collapse (same event id).

Failures: a retriable warehouse error backs off and retries the same batch (nothing is
committed meanwhile, and the buffer does not grow); a non-retriable one is bisected down
to the rows that fail alone, which go to ``dlq.writer`` so they never block a partition.
So does a record that cannot be decoded or converted, whatever it raises
(``forgeline.processing.deadletter``); a flush whose records mostly failed stops the writer
uncommitted instead (the dead-letter limit).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from forgeline.bus.port import Bus, BusUnavailable, OutgoingRecord, Record, TopicPartition
from forgeline.bus.topics import DEAD_LETTER_GROUPS, TICK_HEADER, dead_letter_topic
from forgeline.processing.deadletter import DeadLetterPolicy, DeadLetters, InvalidMessage
from forgeline.processing.loop import LagReporter, RebalanceGuard, backoff, count_consumed, next_offsets
from forgeline.schemas.records import KINDS_BY_TOPIC, RecordKind
from forgeline.telemetry.metrics import (
    PROCESSOR_BATCH_SIZE,
    PROCESSOR_RETRIES,
    WRITER_INSERT_LATENCY,
    WRITER_ROWS,
)
from forgeline.warehouse.port import Warehouse, WarehouseError
from services.writer.steps import DEAD_LETTER_COLUMNS, dead_letter_row, decode_typed, is_dead_letter_topic, to_columns

GROUP = "writer"
DEAD_LETTER_SOURCES = tuple(dead_letter_topic(group) for group in DEAD_LETTER_GROUPS)
log = logging.getLogger(__name__)


@dataclass
class _TableBatch:
    """One table's share of a batch: typed documents (converted to columns at flush time,
    a column at a time) or, for dead letters, rows already built."""

    columns: list[str]
    kind: RecordKind | None
    items: list[Any] = field(default_factory=list)
    sources: list[Record] = field(default_factory=list)


def _decode(record: Record) -> tuple[str, RecordKind | None, tuple[Any, ...] | dict[str, Any]]:
    """(table, kind, item) of a record: a typed document, or a dead letter's row (kind None)."""
    if is_dead_letter_topic(record.topic):
        return "dead_letters", None, dead_letter_row(record)
    kind = KINDS_BY_TOPIC[record.topic]
    return kind.table, kind, decode_typed(record)


@dataclass
class _Batch:
    dead_letters: DeadLetters = field(default_factory=lambda: DeadLetters(GROUP))
    records: list[Record] = field(default_factory=list)
    tables: dict[str, _TableBatch] = field(default_factory=dict)
    dead: list[OutgoingRecord] = field(default_factory=list)
    opened_at: float = 0.0

    def add(self, record: Record) -> None:
        self.add_many([record])

    def add_many(self, records: list[Record]) -> None:
        if records and not self.records:
            self.opened_at = time.monotonic()
        self.records += records
        # A stream-clock tick (services/monitors) has no row; it commits with the batch.
        rows = [record for record in records if record.header(TICK_HEADER) is None]
        for record, (table, kind, item) in self.dead_letters.each(rows, _decode, self.dead):
            batch = self.tables.get(table)
            if batch is None:
                columns = DEAD_LETTER_COLUMNS if kind is None else kind.column_names
                batch = self.tables[table] = _TableBatch(columns, kind)
            batch.items.append(item)
            batch.sources.append(record)

    def reject(self, record: Record, err: Exception) -> None:
        self.dead.append(self.dead_letters.reject(record, err))

    def columns_of(self, tb: _TableBatch) -> tuple[list[list[Any]], list[Record]]:
        """The table's columns and the records they hold (those that do not fit are rejected)."""
        if tb.kind is None:
            return [list(column) for column in zip(*tb.items, strict=True)], tb.sources
        try:
            data, bad = to_columns(tb.kind, tb.items)
        except Exception:  # noqa: BLE001 - not one cell's fault (those are in ``bad``): find who fails alone
            log.exception("converting a batch failed; converting it record by record", extra={"table": tb.kind.table})
            return self._columns_one_by_one(tb.kind, tb)
        for index, err in bad.items():
            self.reject(tb.sources[index], err)
        return data, [source for i, source in enumerate(tb.sources) if i not in bad]

    def _columns_one_by_one(self, kind: RecordKind, tb: _TableBatch) -> tuple[list[list[Any]], list[Record]]:
        data: list[list[Any]] = [[] for _ in kind.columns]
        kept: list[Record] = []
        for item, source in zip(tb.items, tb.sources, strict=True):
            with self.dead_letters.guarded(source, self.dead):
                columns, bad = to_columns(kind, [item])
                if bad:
                    raise bad[0]
                for column, values in zip(data, columns, strict=True):
                    column.extend(values)
                kept.append(source)
        return data, kept


class Writer:
    def __init__(
        self,
        bus: Bus,
        warehouse: Warehouse,
        batch_rows: int,
        flush_seconds: float,
        dead_letters: DeadLetterPolicy | None = None,
    ) -> None:
        self._dead_letters = DeadLetters(GROUP, dead_letters)
        self._consumer = bus.consumer(GROUP, [*KINDS_BY_TOPIC, *DEAD_LETTER_SOURCES])
        self._producer = bus.producer()
        self._warehouse = warehouse
        self._batch_rows = batch_rows
        self._flush_seconds = flush_seconds
        self._stopping = asyncio.Event()
        self.ready = False
        # The batch being built; the guard keeps a rebalance from flushing it while the loop
        # adds to it or flushes it itself.
        self._batch = _Batch(self._dead_letters)
        # One flush in flight while the next batch is read and converted: the insert runs in a
        # thread, so decoding overlaps it. Flushes still run (and commit) strictly in order, and
        # at most two batches are held in memory.
        self._flushing: asyncio.Task[None] | None = None
        self._guard = RebalanceGuard(self._consumer, self._on_revoke)

    async def _on_revoke(self, partitions: set[TopicPartition]) -> None:
        """Before partitions move to another writer: write and commit what is buffered.

        The next owner then starts after our rows, so a rebalance inserts nothing twice.
        Runs under the guard's lock.
        """
        await self._drain()

    async def _drain(self) -> None:
        """Finish the flush in flight, then write and commit the batch being built."""
        if self._flushing is not None:
            flushing, self._flushing = self._flushing, None
            await flushing
        if self._batch.records:
            await self._flush(self._batch)
            self._batch = _Batch(self._dead_letters)

    def stop(self) -> None:
        self._stopping.set()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    async def run(self) -> None:
        await self._producer.start()
        await self._consumer.start()
        lag = LagReporter(GROUP, self._consumer)
        self.ready = True
        try:
            while not self._stopping.is_set():
                room = self._batch_rows - len(self._batch.records)
                wait = 0.2
                if self._batch.records:
                    wait = max(0.0, min(wait, self._batch.opened_at + self._flush_seconds - time.monotonic()))
                records, polled_at = (
                    await self._guard.poll(room, timeout_s=wait) if room > 0 else ([], self._guard.generation)
                )
                async with self._guard.lock:
                    records = self._guard.fresh(records, polled_at)
                    count_consumed(GROUP, records)
                    batch = self._batch
                    batch.add_many(records)
                    due = batch.opened_at + self._flush_seconds <= time.monotonic()
                    if batch.records and (len(batch.records) >= self._batch_rows or due):
                        if self._flushing is not None:
                            await self._flushing
                        self._flushing = asyncio.create_task(self._flush(batch))
                        self._batch = _Batch(self._dead_letters)
                    elif self._flushing is not None and self._flushing.done():
                        await self._flushing  # surfaces its exception, if any
                        self._flushing = None
                await lag.maybe_report({})
            async with self._guard.lock:
                # Graceful stop: write and commit what is buffered before leaving.
                await self._drain()
        finally:
            flushing = self._flushing
            if flushing is not None and not flushing.done():
                flushing.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await flushing
            self.ready = False
            await self._consumer.stop()
            await self._producer.stop()

    async def _flush(self, batch: _Batch) -> None:
        PROCESSOR_BATCH_SIZE.labels(service=GROUP).observe(len(batch.records))
        for table, table_batch in batch.tables.items():
            await self._insert(table, table_batch, batch)
        # Before a single dead letter of it is appended or its offsets committed: a batch that
        # tips the ratio over stays in the log for a fixed version (the inserts above replay as no-ops).
        self._dead_letters.check(len(batch.records), len(batch.dead))
        if batch.dead:
            await self._send_dead_letters(batch.dead)
        await self._consumer.commit(next_offsets(batch.records))

    async def _insert(self, table: str, tb: _TableBatch, batch: _Batch) -> None:
        data, sources = batch.columns_of(tb)
        attempt = 0
        while True:
            try:
                await self._insert_or_bisect(table, tb.columns, data, sources, batch)
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
        data: list[list[Any]],
        sources: list[Record],
        batch: _Batch,
    ) -> None:
        if not sources:
            return
        started = time.perf_counter()
        try:
            await asyncio.to_thread(self._warehouse.insert_columns, table, data, columns)
        except WarehouseError as err:
            if err.retriable:
                raise
            if len(sources) == 1:
                batch.reject(sources[0], InvalidMessage("insert_rejected", str(err)[:1000]))
                return
            # Bisect down to the rows the warehouse refuses alone; the rest are written.
            middle = len(sources) // 2
            left = [column[:middle] for column in data]
            right = [column[middle:] for column in data]
            await self._insert_or_bisect(table, columns, left, sources[:middle], batch)
            await self._insert_or_bisect(table, columns, right, sources[middle:], batch)
            return
        WRITER_INSERT_LATENCY.labels(table=table).observe(time.perf_counter() - started)
        WRITER_ROWS.labels(table=table).inc(len(sources))

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
