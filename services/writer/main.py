"""The writer service: typed.* and dlq.* → warehouse tables, in batches, at least once.

Records are buffered until ``batch_rows`` or ``flush_seconds``; then every table's rows
are inserted and only after all inserts succeeded are the offsets committed. A replay
re-inserts identical rows, which the ReplacingMergeTree tables collapse (same event id).

A typed record is already its row as a ``JSONEachRow`` line (``forgeline.schemas.typed``):
a table's lines are joined and inserted as one block that ClickHouse parses itself
(``Warehouse.insert_json_lines``); a record in the older format (timestamps in ms) is
re-encoded into that line when it is read. Dead letters are rows built here.

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
from typing import Any, Unpack

from forgeline.bus.port import Bus, OutgoingRecord, Record
from forgeline.bus.topics import DEAD_LETTER_GROUPS, TICK_HEADER, dead_letter_topic
from forgeline.clock import Clock, SystemClock
from forgeline.processing.deadletter import DeadLetters, InvalidMessage
from forgeline.processing.host import HostOptions, ProcessorHost, Runtime, Strategy
from forgeline.processing.loop import next_offsets
from forgeline.processing.registry import Parts
from forgeline.processing.retry import retrying
from forgeline.schemas.cells import warehouse_rows
from forgeline.schemas.records import DEAD_LETTERS, KINDS_BY_TOPIC, RecordKind
from forgeline.schemas.typed import AT_RECEIPT_HEADERS, ROW_HEADERS, row_line
from forgeline.telemetry.metrics import WRITER_INSERT_LATENCY, WRITER_RESENDS, WRITER_ROWS
from forgeline.warehouse.port import Warehouse, WarehouseError
from services.writer.resends import adopt_first_times
from services.writer.steps import DEAD_LETTER_COLUMNS, dead_letter_row, is_dead_letter_topic

GROUP = "writer"
DEAD_LETTER_SOURCES = tuple(dead_letter_topic(group) for group in DEAD_LETTER_GROUPS)
log = logging.getLogger(__name__)


@dataclass
class _TableBatch:
    """One table's share of a batch: JSONEachRow lines of typed rows or, for dead letters
    (``kind`` None), rows already built; and the records they came from."""

    columns: list[str]
    kind: RecordKind | None
    items: list[Any] = field(default_factory=list)
    sources: list[Record] = field(default_factory=list)
    at_receipt: list[int] = field(default_factory=list)  # lines whose time is their receipt (resends.py)

    def add(self, item: Any, source: Record) -> None:
        self.items.append(item)
        self.sources.append(source)


def _decode(record: Record) -> tuple[str, RecordKind | None, bytes | tuple[Any, ...]]:
    """(table, kind, item) of a record: a typed row's line, or a dead letter's row (kind None)."""
    if is_dead_letter_topic(record.topic):
        return "dead_letters", None, dead_letter_row(record)
    kind = KINDS_BY_TOPIC[record.topic]
    return kind.table, kind, row_line(record)


@dataclass
class _Batch:
    dead_letters: DeadLetters = field(default_factory=lambda: DeadLetters(GROUP))
    records: list[Record] = field(default_factory=list)
    tables: dict[str, _TableBatch] = field(default_factory=dict)
    dead: list[OutgoingRecord] = field(default_factory=list)
    clock: Clock = field(default_factory=SystemClock)
    opened_at: float = 0.0

    def add(self, record: Record) -> None:
        self.add_many([record])

    def add_many(self, records: list[Record]) -> None:
        if records and not self.records:
            self.opened_at = self.clock.monotonic()
        self.records += records
        others: list[Record] = []
        for record in records:
            # The hot path: a record typed_record made is its row's line already (an odd
            # value among them is caught when the block is built, see WriteStrategy._write).
            kind = KINDS_BY_TOPIC.get(record.topic) if record.headers == ROW_HEADERS else None
            if kind is not None:
                self._table(kind.table, kind).add(record.value, record)
            elif record.headers == AT_RECEIPT_HEADERS and record.topic in KINDS_BY_TOPIC:
                kind = KINDS_BY_TOPIC[record.topic]
                marked = self._table(kind.table, kind)
                marked.at_receipt.append(len(marked.items))
                marked.add(record.value, record)
            else:
                others.append(record)
        # A stream-clock tick (services/monitors) has no row; it commits with the batch.
        rows = [record for record in others if record.header(TICK_HEADER) is None]
        for record, (table, kind, item) in self.dead_letters.each(rows, _decode, self.dead):
            self._table(table, kind).add(item, record)

    def _table(self, table: str, kind: RecordKind | None) -> _TableBatch:
        batch = self.tables.get(table)
        if batch is None:
            columns = DEAD_LETTER_COLUMNS if kind is None else kind.column_names
            batch = self.tables[table] = _TableBatch(columns, kind)
        return batch

    def reject(self, record: Record, err: Exception) -> None:
        self.dead.append(self.dead_letters.reject(record, err))


class WriteStrategy(Strategy):
    """Buffer records into a batch; flush it when full or due, one flush in flight at a time."""

    def __init__(
        self, runtime: Runtime, warehouse: Warehouse, batch_rows: int, flush_seconds: float, resend_window_s: float
    ) -> None:
        self._runtime = runtime
        self._warehouse = warehouse
        self._batch_rows = batch_rows
        self._flush_seconds = flush_seconds
        self._resend_window_ms = int(resend_window_s * 1000)
        self._clock = runtime.clock
        self._batch = self._new_batch()
        # One flush in flight while the next batch is read and converted: the insert runs in a
        # thread, so decoding overlaps it. Flushes still run (and commit) strictly in order, and
        # at most two batches are held in memory.
        self._flushing: asyncio.Task[None] | None = None

    def _new_batch(self) -> _Batch:
        return _Batch(self._runtime.dead_letters, clock=self._clock)

    def capacity(self) -> tuple[int, float]:
        room = self._batch_rows - len(self._batch.records)
        wait = 0.2
        if self._batch.records:
            wait = max(0.0, min(wait, self._batch.opened_at + self._flush_seconds - self._clock.monotonic()))
        return room, wait

    async def submit(self, records: list[Record]) -> None:
        self._batch.add_many(records)

    async def poll(self) -> None:
        batch = self._batch
        due = batch.opened_at + self._flush_seconds <= self._clock.monotonic()
        if batch.records and (len(batch.records) >= self._batch_rows or due):
            if self._flushing is not None:
                await self._flushing
            self._flushing = asyncio.create_task(self._flush(batch))
            self._batch = self._new_batch()
        elif self._flushing is not None and self._flushing.done():
            await self._flushing  # surfaces its exception, if any
            self._flushing = None

    async def join(self) -> None:
        """Finish the flush in flight, then write and commit the batch being built (before
        partitions move to another writer, or at stop: the next owner starts after our rows)."""
        if self._flushing is not None:
            flushing, self._flushing = self._flushing, None
            await flushing
        if self._batch.records:
            await self._flush(self._batch)
            self._batch = self._new_batch()

    async def close(self) -> None:
        flushing = self._flushing
        if flushing is not None and not flushing.done():
            flushing.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await flushing

    async def _flush(self, batch: _Batch) -> None:
        for table, table_batch in batch.tables.items():
            await self._insert(table, table_batch, batch)
        # Before a single dead letter of it is appended or its offsets committed: a batch that
        # tips the ratio over stays in the log for a fixed version (the inserts above replay as no-ops).
        await self._runtime.settle(len(batch.records), batch.dead)
        await self._runtime.commit(next_offsets(batch.records), len(batch.records))

    async def _insert(self, table: str, tb: _TableBatch, batch: _Batch) -> None:
        # Only retriable errors come out of the bisection; a stopping writer leaves them.
        await retrying(
            lambda: self._adopt_then_insert(table, tb, batch),
            service=GROUP,
            reason="warehouse",
            retriable=lambda err: isinstance(err, WarehouseError) and not self._runtime.stopping.is_set(),
            what=f"insert {table}",
        )

    async def _adopt_then_insert(self, table: str, tb: _TableBatch, batch: _Batch) -> None:
        if tb.kind is not None and tb.at_receipt and self._resend_window_ms > 0:
            # A resend of a row already stored (or earlier in this batch) takes that row's times.
            try:
                tb.items, adopted = await asyncio.to_thread(
                    adopt_first_times, self._warehouse, tb.kind, tb.items, tb.at_receipt, self._resend_window_ms
                )
                WRITER_RESENDS.labels(table=table).inc(adopted)
            except WarehouseError as err:
                if err.retriable:
                    raise  # retried with the insert
                # A lookup the warehouse refuses must not stop the writer: the rows go in as
                # they are (a resend among them stays a second row of its id).
                log.warning("resend lookup refused; rows written as is", extra={"table": table, "error": str(err)})
            tb.at_receipt = []
        await self._insert_or_bisect(table, tb, tb.items, tb.sources, batch)

    def _write(self, table: str, tb: _TableBatch, items: list[Any]) -> None:
        if tb.kind is None:
            self._warehouse.insert(table, warehouse_rows(DEAD_LETTERS, items), tb.columns)
            return
        # One block for ClickHouse's own JSONEachRow parser: no per-cell Python on the way.
        block = b"\n".join(items)
        if block.count(b"\n") != len(items) - 1 or b"" in items:
            # A record that is not exactly one line would store more rows, or none: the
            # bisection narrows this down to it, and it is dead-lettered.
            raise WarehouseError("a typed record is not exactly one JSONEachRow line", retriable=False)
        self._warehouse.insert_json_lines(table, tb.columns, block)

    async def _insert_or_bisect(
        self, table: str, tb: _TableBatch, items: list[Any], sources: list[Record], batch: _Batch
    ) -> None:
        if not sources:
            return
        started = time.perf_counter()
        try:
            await asyncio.to_thread(self._write, table, tb, items)
        except WarehouseError as err:
            if err.retriable:
                raise
            if len(sources) == 1:
                batch.reject(sources[0], InvalidMessage("insert_rejected", str(err)[:1000]))
                return
            # Bisect down to the rows the warehouse refuses alone; the rest are written.
            middle = len(sources) // 2
            await self._insert_or_bisect(table, tb, items[:middle], sources[:middle], batch)
            await self._insert_or_bisect(table, tb, items[middle:], sources[middle:], batch)
            return
        WRITER_INSERT_LATENCY.labels(table=table).observe(time.perf_counter() - started)
        WRITER_ROWS.labels(table=table).inc(len(sources))


class Writer(ProcessorHost):
    def __init__(
        self,
        bus: Bus,
        warehouse: Warehouse,
        batch_rows: int,
        flush_seconds: float,
        resend_window_s: float = 86_400.0,
        **options: Unpack[HostOptions],
    ) -> None:
        super().__init__(
            GROUP,
            bus,
            [*KINDS_BY_TOPIC, *DEAD_LETTER_SOURCES],
            lambda rt: WriteStrategy(rt, warehouse, batch_rows, flush_seconds, resend_window_s),
            **options,
        )


def build(parts: Parts) -> Writer:
    s = parts.settings
    return Writer(
        parts.bus,
        parts.warehouse,
        s.writer_batch_rows,
        s.writer_flush_seconds,
        s.resend_window_hours * 3600,
        dead_letters=parts.dead_letters,
    )
