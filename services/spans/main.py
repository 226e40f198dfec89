"""The span assembler service: typed.spans → span_tree and trace_summaries.

Loop: poll → parse → reload traces not in memory from ``span_tree`` (they may have been
summarized before an eviction or a restart) → ``Assembler.add`` → write the traces that
have been quiet for ``quiet_s`` → commit.

Commits never pass a span whose trace is not yet written: the committed offset of a
partition is the smallest offset of an unwritten span on it (``Assembler.commit_floor``),
so after a crash the open traces are rebuilt from the log and nothing is lost. A replay
of spans already written is harmless: the rows are identical (same version) and
ReplacingMergeTree keeps one. A graceful stop writes every open trace first.

Kafka groups: before partitions move, every open trace is written and committed (as at a
graceful stop) and the in-memory traces are dropped; whoever owns a partition next
reloads a trace from ``span_tree`` when a late span of it arrives.

Known limits: one warehouse read per batch that brings traces not in memory (a late span
of an evicted trace, or any new trace); a trace that never goes quiet (a span every
``quiet_s``) is only written when it does, or at stop.
"""

from __future__ import annotations

import logging
from typing import Any, Unpack

from forgeline.bus.port import Bus, OutgoingRecord, Record, TopicPartition
from forgeline.bus.topics import TYPED_SPANS
from forgeline.processing.host import DEFAULT_POLL_TIMEOUT_S, HostOptions, ProcessorHost, Runtime, Strategy
from forgeline.processing.registry import Parts
from forgeline.processing.sinks import insert_with_retry, query_with_retry, send_with_retry
from forgeline.schemas.cells import rows_from_warehouse, select_list, warehouse_rows
from forgeline.schemas.records import SPAN_TREE, TRACE_SUMMARIES
from forgeline.schemas.typed import decode_typed
from forgeline.telemetry.metrics import (
    SPANS_OPEN_TRACES,
    SPANS_TRACES_SUMMARIZED,
)
from forgeline.warehouse.port import Warehouse
from services.spans.steps import (
    SUMMARY_COLUMNS,
    TREE_COLUMNS,
    Assembler,
    Span,
    SpanNode,
    TraceSummary,
    span_from_doc,
)

GROUP = "spans"
log = logging.getLogger(__name__)

# The span_tree columns a Span is rebuilt from (span_from_doc); the others are the tree's.
_LOAD_COLUMNS = [
    "project_id", "environment", "trace_id", "span_id", "parent_span_id", "event_id", "name", "kind", "status",
    "level", "service", "started_at", "ended_at", "received_at", "duration_ms",
]  # fmt: skip


def _quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def load_sql(database: str, keys: list[tuple[str, str]]) -> str:
    cols = select_list(SPAN_TREE, _LOAD_COLUMNS)
    pairs = ", ".join(f"({_quote(p)}, {_quote(t)})" for p, t in keys)
    return f"SELECT {cols} FROM {database}.span_tree FINAL WHERE (project_id, trace_id) IN ({pairs})"


def _parse(record: Record) -> Span:
    return span_from_doc(decode_typed(record))


def tree_row(node: SpanNode, version: int) -> tuple[Any, ...]:
    """The ``span_tree`` row (``SPAN_TREE``' columns, timestamps as epoch ms)."""
    s = node.span
    return (
        s.project_id, s.environment, s.trace_id, s.span_id, s.parent_span_id, s.event_id, s.name, s.kind,
        s.status, s.level, s.service, s.started_ms, s.ended_ms, s.received_ms, s.duration_ms, node.depth,
        int(node.is_orphan), node.child_count, node.self_time_ms, version,
    )  # fmt: skip


def summary_row(t: TraceSummary, summarized_ms: int) -> tuple[Any, ...]:
    """The ``trace_summaries`` row (``TRACE_SUMMARIES``' columns, timestamps as epoch ms)."""
    return (
        t.project_id, t.environment, t.trace_id, t.root_span_id, t.root_name, t.started_ms, t.ended_ms,
        t.duration_ms, t.span_count, t.max_depth, t.error_count, t.orphan_count, list(t.services), t.version,
        summarized_ms,
    )  # fmt: skip


class AssembleSpansStrategy(Strategy):
    def __init__(self, runtime: Runtime, warehouse: Warehouse, quiet_s: float, keep_s: float, batch: int) -> None:
        self._runtime = runtime
        self._warehouse = warehouse
        self._clock = runtime.clock
        self._batch = batch
        self._quiet_s, self._keep_s = quiet_s, keep_s
        self._assembler = Assembler(quiet_s, keep_s)
        self._consumed: dict[TopicPartition, int] = {}
        self._committed: dict[TopicPartition, int] = {}
        self._ingested = 0  # records read since the last commit (the batch-size metric)

    def capacity(self) -> tuple[int, float]:
        return self._batch, DEFAULT_POLL_TIMEOUT_S

    async def submit(self, records: list[Record]) -> None:
        await self._ingest(records)

    async def poll(self) -> None:
        await self._flush(everything=False)

    async def join(self) -> None:
        """Write every open trace and commit (before a revocation, or at a graceful stop)."""
        await self._flush(everything=True)

    async def revoked(self, partitions: set[TopicPartition]) -> None:
        """Forget every trace: whoever owns a partition next reloads one from ``span_tree``."""
        self._assembler = Assembler(self._quiet_s, self._keep_s)
        self._consumed.clear()
        self._committed.clear()

    async def _ingest(self, records: list[Record]) -> None:
        dead: list[OutgoingRecord] = []
        parsed = list(self._runtime.dead_letters.each(records, _parse, dead))
        missing = sorted(self._assembler.needs_load(span for _, span in parsed))
        if missing:
            stored: dict[tuple[str, str], list[Span]] = {key: [] for key in missing}
            for i in range(0, len(missing), 500):
                sql = load_sql(self._warehouse.database, missing[i : i + 500])
                rows = await query_with_retry(self._warehouse, sql, None, GROUP)
                for row in rows_from_warehouse(SPAN_TREE, _LOAD_COLUMNS, rows):
                    span = span_from_doc(row)
                    stored[(span.project_id, span.trace_id)].append(span)
            for key, spans in stored.items():
                self._assembler.restore(key, spans)
        now = self._clock.monotonic()
        for record, span in parsed:
            with self._runtime.dead_letters.guarded(record, dead):
                self._assembler.add(span, record.partition, record.offset, now)
        # Over the limit: raise before these dead letters are appended or any offset moves (the
        # service stops; its open traces come back from the log at the next start).
        self._runtime.dead_letters.check(len(records), len(dead))
        await send_with_retry(self._runtime.producer, dead, GROUP)
        for record in records:
            self._consumed[record.tp] = max(self._consumed.get(record.tp, 0), record.offset + 1)
        self._ingested += len(records)

    async def _flush(self, everything: bool) -> None:
        now = self._clock.monotonic()
        due = self._assembler.due(now, everything=everything)
        if due:
            # Summaries first: span_tree is what a restart restores from, so a trace must not
            # be there unless its summary is (a crash in between re-summarizes it).
            now_ms = int(self._clock.time() * 1000)
            summaries = warehouse_rows(TRACE_SUMMARIES, [summary_row(summary, now_ms) for _, summary in due])
            await insert_with_retry(self._warehouse, "trace_summaries", summaries, SUMMARY_COLUMNS, GROUP)
            tree_rows = warehouse_rows(
                SPAN_TREE, [tree_row(node, summary.version) for nodes, summary in due for node in nodes]
            )
            await insert_with_retry(self._warehouse, "span_tree", tree_rows, TREE_COLUMNS, GROUP)
            for _, summary in due:
                SPANS_TRACES_SUMMARIZED.labels(kind="orphaned" if summary.orphan_count else "complete").inc()
        self._assembler.evict(now)
        SPANS_OPEN_TRACES.set(len(self._assembler.traces))
        offsets = {}
        for tp, consumed in self._consumed.items():
            floor = self._assembler.commit_floor(tp.partition)
            offset = consumed if floor is None else min(floor, consumed)
            if offset > self._committed.get(tp, -1):
                offsets[tp] = offset
        if offsets:
            await self._runtime.commit(offsets, self._ingested)
            self._committed.update(offsets)
            self._ingested = 0


class SpanAssemblerService(ProcessorHost):
    def __init__(self, bus: Bus, warehouse: Warehouse, quiet_s: float = 5.0, keep_s: float = 300.0,
                 batch: int = 1000, **options: Unpack[HostOptions]) -> None:  # fmt: skip
        def strategy(runtime: Runtime) -> Strategy:
            return AssembleSpansStrategy(runtime, warehouse, quiet_s, keep_s, batch)

        super().__init__(GROUP, bus, [TYPED_SPANS], strategy, **options)


def build(parts: Parts) -> SpanAssemblerService:
    return SpanAssemblerService(
        parts.bus, parts.warehouse, quiet_s=parts.settings.span_quiet_seconds, dead_letters=parts.dead_letters
    )
