"""The normalizer service: raw.* → typed.* (and dlq.normalizer), at least once.

Each polled batch is normalized in slices of about ``normalizer_batch`` items (a raw record
is one item or a whole request): a slice's outputs are appended durably, and only then are
its input offsets committed. A crash in between replays the slice; the typed records it
produces again are identical, and the writer's tables collapse them.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Unpack

from forgeline.bus.port import Bus, OutgoingRecord, Record
from forgeline.bus.topics import TICK_HEADER, TYPED_CHECKINS
from forgeline.processing.deadletter import DeadLetters
from forgeline.processing.host import DEFAULT_POLL_TIMEOUT_S, HostOptions, ProcessorHost, Runtime, Strategy
from forgeline.processing.loop import next_offsets
from forgeline.processing.registry import Parts
from forgeline.processing.sinks import send_with_retry
from services.normalizer.steps import NORMALIZERS, forward_tick, normalize

GROUP = "normalizer"


def normalize_slices(
    records: list[Record], checkin_partitions: int, dead_letters: DeadLetters, max_items: int
) -> Iterator[tuple[list[Record], list[OutgoingRecord]]]:
    """``records`` in consecutive slices, each with its outputs (typed records, then dead letters).

    A raw record is one item or a whole request (up to ~1000 items), so a slice is cut at the
    first record boundary where its records held ``max_items`` items: the outputs in memory
    stay near ``max_items`` however large the records are, and every slice ends on a record,
    so its offsets can be committed once its outputs are appended. The generator expands the
    next slice only when asked for it.

    Every family is handled alike: a record whose splitter raises is dead-lettered whole, a
    failed item alone (``dead_letter_key``: its index), and the dead-letter limit counts
    items. It is checked per slice, before the slice is handed out: DeadLetterLimitExceeded
    if most recent items failed (nothing of that slice to append or commit).
    """
    start, items = 0, 0
    out: list[OutgoingRecord] = []
    dead: list[OutgoingRecord] = []
    last = len(records) - 1
    for n, record in enumerate(records):
        try:
            if record.header(TICK_HEADER) is not None:
                # A stream-clock tick (services/monitors): fan out to every typed.checkins
                # partition, after every check-in of this raw partition read before it.
                out += forward_tick(record, checkin_partitions)
                items += 1
            else:
                typed, failed, count = normalize(record)
                out += typed
                dead.extend(dead_letters.reject(item.record, item.error, item.key) for item in failed)
                items += count
        except Exception as err:  # noqa: BLE001 - one record's failure, never the batch's
            dead.append(dead_letters.reject(record, err))
            items += 1
        if items >= max_items or n == last:
            dead_letters.check(items, len(dead))
            out += dead
            yield records[start : n + 1], out
            start, items, out, dead = n + 1, 0, [], []


def process_batch(
    records: list[Record], checkin_partitions: int = 1, dead_letters: DeadLetters | None = None
) -> list[OutgoingRecord]:
    """The typed records and dead letters of ``records`` taken as one slice (replays, tools)."""
    slices = normalize_slices(records, checkin_partitions, dead_letters or DeadLetters(GROUP), sys.maxsize)
    return [out for _, outputs in slices for out in outputs]


class NormalizeStrategy(Strategy):
    """Normalize a batch slice by slice (``normalize_slices``, about ``batch`` items each):
    append a slice's outputs durably, then commit it, then expand the next one (under the
    guard's lock: a rebalance waits, so the next owner never normalizes it again)."""

    def __init__(self, runtime: Runtime, batch: int) -> None:
        self._runtime = runtime
        self._batch = batch
        self._checkin_partitions = runtime.bus.partitions(TYPED_CHECKINS)

    def capacity(self) -> tuple[int, float]:
        return self._batch, DEFAULT_POLL_TIMEOUT_S

    async def submit(self, records: list[Record]) -> None:
        dead_letters = self._runtime.dead_letters
        for done, out in normalize_slices(records, self._checkin_partitions, dead_letters, self._batch):
            # The bus is down or slow: retry, never commit past it.
            await send_with_retry(self._runtime.producer, out, GROUP)
            await self._runtime.commit(next_offsets(done), len(done))


class Normalizer(ProcessorHost):
    def __init__(self, bus: Bus, batch: int = 1000, **options: Unpack[HostOptions]) -> None:
        super().__init__(GROUP, bus, list(NORMALIZERS), lambda rt: NormalizeStrategy(rt, batch), **options)


def build(parts: Parts) -> Normalizer:
    return Normalizer(parts.bus, parts.settings.normalizer_batch, dead_letters=parts.dead_letters)
