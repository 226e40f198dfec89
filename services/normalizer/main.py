"""The normalizer service: raw.* → typed.* (and dlq.normalizer), at least once.

Each polled batch is normalized, its outputs appended durably, and only then are the
input offsets committed. A crash in between replays the batch; the typed records it
produces again are identical, and the writer's tables collapse them.
"""

from __future__ import annotations

from typing import Unpack

from forgeline.bus.port import Bus, OutgoingRecord, Record
from forgeline.bus.topics import RAW_LOGISTER, TICK_HEADER, TYPED_CHECKINS
from forgeline.processing.deadletter import DeadLetters
from forgeline.processing.host import DEFAULT_POLL_TIMEOUT_S, HostOptions, ProcessorHost, Runtime, Strategy
from forgeline.processing.loop import next_offsets
from forgeline.processing.registry import Parts
from forgeline.processing.sinks import send_with_retry
from services.normalizer.logister import split_logister
from services.normalizer.steps import NORMALIZERS, forward_tick, normalize

GROUP = "normalizer"


def process_batch(
    records: list[Record], checkin_partitions: int = 1, dead_letters: DeadLetters | None = None
) -> list[OutgoingRecord]:
    """The typed records (and dead letters) of a batch. A record whose step raises anything is
    dead-lettered; DeadLetterLimitExceeded if most recent records failed (nothing to forward).

    A Logister batch record counts as its items, and a bad item is dead-lettered alone."""
    dead_letters = dead_letters or DeadLetters(GROUP)
    out: list[OutgoingRecord] = []
    dead: list[OutgoingRecord] = []
    processed = len(records)

    def step(record: Record) -> list[OutgoingRecord]:
        nonlocal processed
        if record.header(TICK_HEADER) is not None:
            # A stream-clock tick (services/monitors): fan out to every typed.checkins
            # partition, after every check-in of this raw partition read before it.
            return forward_tick(record, checkin_partitions)
        if record.topic == RAW_LOGISTER:
            typed, failed = split_logister(record)
            processed += max(len(typed) + len(failed), 1) - 1
            dead.extend(dead_letters.reject(item, error) for item, error in failed)
            return typed
        return normalize(record)

    for _, typed in dead_letters.each(records, step, dead):
        out += typed
    dead_letters.check(processed, len(dead))
    out.extend(dead)
    return out


class NormalizeStrategy(Strategy):
    """Normalize a batch, append its outputs durably, then commit it (under the guard's lock:
    a rebalance waits, so the next owner never normalizes it again)."""

    def __init__(self, runtime: Runtime, batch: int) -> None:
        self._runtime = runtime
        self._batch = batch
        self._checkin_partitions = runtime.bus.partitions(TYPED_CHECKINS)

    def capacity(self) -> tuple[int, float]:
        return self._batch, DEFAULT_POLL_TIMEOUT_S

    async def submit(self, records: list[Record]) -> None:
        out = process_batch(records, self._checkin_partitions, self._runtime.dead_letters)
        # The bus is down or slow: retry, never commit past it.
        await send_with_retry(self._runtime.producer, out, GROUP)
        await self._runtime.commit(next_offsets(records), len(records))


class Normalizer(ProcessorHost):
    def __init__(self, bus: Bus, batch: int = 1000, **options: Unpack[HostOptions]) -> None:
        super().__init__(GROUP, bus, list(NORMALIZERS), lambda rt: NormalizeStrategy(rt, batch), **options)


def build(parts: Parts) -> Normalizer:
    return Normalizer(parts.bus, parts.settings.normalizer_batch, dead_letters=parts.dead_letters)
