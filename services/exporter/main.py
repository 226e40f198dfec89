"""The exporter service: typed.* → NDJSON files in the blob store, each offset range once.

Records are buffered per topic partition (one open *flush range* each) until ``max_rows``
or ``max_bytes`` are buffered, ``flush_seconds`` have passed, or a flush request arrives
on ``control.exporter`` (``POST /api/export``). A flush writes, per partition, one file per
UTC hour of its rows (``services/exporter/files.py``), each atomically through the
blob-store port, and only then commits the offsets: at-least-once delivery of records,
exactly-once files.

Why a replay never duplicates a line: a file is named by its flush range — the offset of
the flush's first data record and the offset of its last record — and the file holding
that first record is written first. Only the last flush of a partition can be uncommitted
at a crash. On restart, at the first data record of each partition (the same record as
before: everything up to the commit is done), the exporter lists
``<table>/date=…/hour=…/<partition>-<first>-`` for the file of that record's hour; if one
exists, the crashed flush got that far and its name gives the range's end, so this flush
is held to exactly that range and rewrites the same files with the same bytes (then
commits). If none exists, no file of that flush was written and the range is free.
Monitor ticks (``TICK_HEADER``) and records that make no row are skipped but committed.
A record whose conversion raises anything else goes to ``dlq.exporter`` (appended before
its range is committed) and is committed too; a stream that mostly fails stops the exporter
uncommitted instead (``forgeline.processing.deadletter``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar, Unpack

from forgeline.blobstore.configured import blob_store_for
from forgeline.blobstore.port import BlobStore
from forgeline.bus.port import Bus, OutgoingRecord, Record, TopicPartition
from forgeline.bus.topics import CONTROL_EXPORTER, TICK_HEADER, TYPED_TOPICS
from forgeline.processing.host import HostOptions, ProcessorHost, Runtime, Strategy
from forgeline.processing.registry import Parts
from forgeline.processing.retry import retrying
from forgeline.processing.sinks import send_with_retry
from forgeline.schemas.records import KINDS_BY_TOPIC, RecordKind
from forgeline.telemetry.metrics import (
    EXPORTER_BUFFERED,
    EXPORTER_BYTES,
    EXPORTER_FILES,
    EXPORTER_FLUSH_LATENCY,
    EXPORTER_FLUSHES,
    EXPORTER_LINES,
    EXPORTER_REQUESTS,
    EXPORTER_SKIPPED,
)
from services.exporter.files import (
    CONTENT_TYPE,
    GZIP_CONTENT_TYPE,
    BadRow,
    encode_file,
    file_key,
    hour_prefix,
    line_from_record,
    parse_name,
)

GROUP = "exporter"
POLL_CHUNK = 5000  # records per poll: bounds the bus adapter's read-ahead per partition
log = logging.getLogger(__name__)

Hour = tuple[str, str]
T = TypeVar("T")


@dataclass
class _Range:
    """The open flush range of one topic partition."""

    kind: RecordKind
    tp: TopicPartition
    last: int = -1
    first_data: int | None = None  # offset of the first record with a row: names the files
    anchor: Hour | None = None  # that record's hour: its file is written first
    hours: dict[Hour, list[bytes]] = field(default_factory=dict)
    rows: int = 0
    size: int = 0
    # Set when a crashed run already wrote files of this range: end and format to repeat.
    pinned_last: int | None = None
    pinned_gzip: bool | None = None

    @property
    def ready(self) -> bool:
        return self.pinned_last is None or self.last >= self.pinned_last


def _line(kind: RecordKind, record: Record) -> tuple[Hour, bytes] | None:
    """The record's hour and NDJSON line; None for a record that makes no row (the writer
    dead-letters it, so it is only counted here)."""
    try:
        return line_from_record(kind, record)
    except BadRow as err:
        EXPORTER_SKIPPED.labels(table=kind.table).inc()
        log.warning("record makes no row; skipped", extra={"topic": record.topic, "offset": record.offset,
                                                           "error": str(err)[:300]})  # fmt: skip
        return None


class ExportStrategy(Strategy):
    def __init__(self, runtime: Runtime, store: BlobStore, limits: tuple[int, int, float], *, compress: bool) -> None:
        """``limits``: (max_rows, max_bytes, flush_seconds) — whichever is reached first flushes."""
        max_rows, max_bytes, flush_seconds = limits
        self._runtime = runtime
        self._clock = runtime.clock
        self._dead: list[OutgoingRecord] = []  # appended at the next flush, before its commit
        self._store = store
        self._max_rows = max_rows
        self._max_bytes = max_bytes
        self._flush_seconds = flush_seconds
        self._compress = compress
        self._open: dict[TopicPartition, _Range] = {}
        self._checked: set[TopicPartition] = set()  # partitions past their restart check
        self._control: dict[TopicPartition, int] = {}  # control offsets to commit with the flush
        self._opened_at: float | None = None
        self._rows = 0
        self._bytes = 0
        self._requested = False
        self._room = 1
        self._caught_up = True  # the last poll returned less than it asked for

    def capacity(self) -> tuple[int, float]:
        self._room = max(1, min(POLL_CHUNK, self._max_rows - self._rows))
        self._caught_up = True
        return self._room, self._wait()

    async def submit(self, records: list[Record]) -> None:
        failed = 0
        for record in records:
            failed += await self._add(record)
        self._runtime.dead_letters.check(len(records), failed)
        self._caught_up = len(records) < self._room

    async def poll(self) -> None:
        EXPORTER_BUFFERED.set(self._rows)
        reason = self._due(caught_up=self._caught_up)
        if reason is not None:
            await self._flush(reason)

    async def join(self) -> None:
        await self._flush("stop")

    async def revoked(self, partitions: set[TopicPartition]) -> None:
        """Drop what ``join`` could not write (a replayed range still short of its end) and the
        restart checks: these partitions are re-read from their commit, here or elsewhere, and
        another replica may write files of them meanwhile."""
        self._open.clear()
        self._checked.clear()
        self._rows = self._bytes = 0
        self._opened_at = None
        EXPORTER_BUFFERED.set(0)

    def _wait(self) -> float:
        if self._requested:
            return 0.0
        if self._opened_at is None:
            return 0.2
        return max(0.0, min(0.2, self._opened_at + self._flush_seconds - self._clock.monotonic()))

    def _due(self, caught_up: bool) -> str | None:
        if self._rows >= self._max_rows:
            return "rows"
        if self._bytes >= self._max_bytes:
            return "bytes"
        if any(r.pinned_last is not None and r.ready for r in self._open.values()):
            return "replay"
        if self._requested and caught_up:
            return "request"  # everything appended before the request has been read
        if self._opened_at is not None and self._clock.monotonic() - self._opened_at >= self._flush_seconds:
            return "time"
        return None

    async def _add(self, record: Record) -> bool:
        """Buffer one record; True if it was dead-lettered."""
        if self._opened_at is None:
            self._opened_at = self._clock.monotonic()
        if record.topic == CONTROL_EXPORTER:
            self._control[record.tp] = record.offset + 1
            EXPORTER_REQUESTS.labels(outcome="coalesced" if self._requested else "flushed").inc()
            self._requested = True
            return False
        tp = record.tp
        open_range = self._open.get(tp)
        if open_range is not None and open_range.pinned_last is not None and record.offset > open_range.pinned_last:
            # Past the end of the replayed range: write that range as it was, then go on.
            await self._flush("replay")
            open_range = None
        if open_range is None:
            open_range = self._open[tp] = _Range(KINDS_BY_TOPIC[record.topic], tp)
        open_range.last = record.offset
        if record.header(TICK_HEADER) is not None:
            return False  # a monitor clock tick: no row, committed with the range
        kind = open_range.kind
        made: tuple[Hour, bytes] | None = None
        with self._runtime.dead_letters.guarded(record, self._dead) as guard:
            made = _line(kind, record)
        if made is None:
            return guard.failed  # no row (skipped, or dead-lettered): committed with the range
        hour, line = made
        if open_range.first_data is None:
            open_range.first_data, open_range.anchor = record.offset, hour
            if tp not in self._checked:
                await self._check_replay(open_range)
                self._checked.add(tp)
        open_range.hours.setdefault(hour, []).append(line)
        open_range.rows += 1
        open_range.size += len(line)
        self._rows += 1
        self._bytes += len(line)
        return False

    async def _check_replay(self, open_range: _Range) -> None:
        """Did a crashed run already write files of this range? Then hold it to their range."""
        assert open_range.anchor is not None and open_range.first_data is not None
        name_start = f"{open_range.tp.partition}-{open_range.first_data}-"
        prefix = hour_prefix(open_range.kind, *open_range.anchor) + name_start
        listed = await self._retry("list", asyncio.to_thread, self._store.list_objects, prefix)
        names = [n for n in (parse_name(info.key) for info in listed) if n]
        if not names:
            return
        found = max(names, key=lambda n: n.last)
        open_range.pinned_last, open_range.pinned_gzip = found.last, found.compressed
        log.info(
            "replaying a flush a crash interrupted",
            extra={
                "topic": open_range.tp.topic,
                "partition": open_range.tp.partition,
                "first": found.first,
                "last": found.last,
            },  # fmt: skip
        )

    async def _flush(self, reason: str) -> None:
        started = time.perf_counter()
        commits = dict(self._control)
        flushed = 0
        for tp, open_range in list(self._open.items()):
            if not open_range.ready:
                continue  # a replayed range waits for its last record
            await self._write(open_range)
            commits[tp] = open_range.last + 1
            flushed += open_range.rows
            del self._open[tp]
        if self._dead:
            await send_with_retry(self._runtime.producer, self._dead, GROUP)
            self._dead = []
        await self._runtime.commit(commits, flushed if commits else None)
        self._control.clear()
        self._requested = False
        self._rows = sum(r.rows for r in self._open.values())
        self._bytes = sum(r.size for r in self._open.values())
        self._opened_at = self._clock.monotonic() if self._open else None
        EXPORTER_BUFFERED.set(self._rows)
        if commits:
            EXPORTER_FLUSHES.labels(reason=reason).inc()
            EXPORTER_FLUSH_LATENCY.observe(time.perf_counter() - started)

    async def _write(self, open_range: _Range) -> None:
        if open_range.first_data is None or open_range.anchor is None:
            return  # ticks or rowless records only: nothing to write, just commit
        compress = self._compress if open_range.pinned_gzip is None else open_range.pinned_gzip
        content_type = GZIP_CONTENT_TYPE if compress else CONTENT_TYPE
        kind, tp = open_range.kind, open_range.tp
        # The anchor's file first: if any file of this range exists, that one does.
        order = [open_range.anchor, *sorted(h for h in open_range.hours if h != open_range.anchor)]
        for hour in order:
            lines = open_range.hours[hour]
            key = file_key(kind, *hour, tp.partition, open_range.first_data, open_range.last, compress)
            data = await asyncio.to_thread(encode_file, lines, compress) if compress else encode_file(lines, False)
            await self._retry("put", asyncio.to_thread, self._store.put, key, data, content_type)
            EXPORTER_FILES.labels(table=kind.table).inc()
            EXPORTER_LINES.labels(table=kind.table).inc(len(lines))
            EXPORTER_BYTES.labels(table=kind.table).inc(len(data))

    async def _retry(self, what: str, call: Callable[..., Awaitable[T]], *args: Any) -> T:
        """A blob-store call, retried with backoff: a stuck store stalls the exporter, loses nothing
        (a stopping exporter gives up after a few tries)."""
        stopping = self._runtime.stopping
        return await retrying(
            lambda: call(*args),
            service=GROUP,
            reason="blobstore",
            retriable=lambda err: True,  # any adapter's failure (OSError, S3 errors)
            give_up=lambda attempt: stopping.is_set() and attempt >= 3,
            what=what,
        )


class Exporter(ProcessorHost):
    def __init__(self, bus: Bus, store: BlobStore, *, max_rows: int, max_bytes: int, flush_seconds: float,
                 compress: bool, **options: Unpack[HostOptions]) -> None:  # fmt: skip
        def strategy(runtime: Runtime) -> Strategy:
            limits = (max_rows, max_bytes, flush_seconds)
            return ExportStrategy(runtime, store, limits, compress=compress)

        topics = [t for t in TYPED_TOPICS if t in KINDS_BY_TOPIC]
        super().__init__(GROUP, bus, [*topics, CONTROL_EXPORTER], strategy, **options)


def build(parts: Parts) -> Exporter:
    s = parts.settings
    return Exporter(
        parts.bus,
        blob_store_for(s, s.resolved_export_url),
        max_rows=s.export_max_rows,
        max_bytes=s.export_max_bytes,
        flush_seconds=s.export_flush_seconds,
        compress=s.export_gzip,
        dead_letters=parts.dead_letters,
    )
