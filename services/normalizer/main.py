"""The normalizer service: raw.* → typed.* (and dlq.normalizer), at least once.

Each polled batch is normalized, its outputs appended durably, and only then are the
input offsets committed. A crash in between replays the batch; the typed records it
produces again are identical, and the writer's tables collapse them.
"""

from __future__ import annotations

import asyncio
import logging

from forgeline.bus.port import Bus, BusUnavailable, OutgoingRecord, Record
from forgeline.bus.topics import TICK_HEADER, TYPED_CHECKINS
from forgeline.processing.deadletter import DeadLetterPolicy, DeadLetters
from forgeline.processing.loop import LagReporter, RebalanceGuard, backoff, count_consumed, next_offsets
from forgeline.telemetry.metrics import PROCESSOR_BATCH_SIZE, PROCESSOR_RETRIES
from services.normalizer.steps import NORMALIZERS, forward_tick, normalize

GROUP = "normalizer"
log = logging.getLogger(__name__)


def process_batch(
    records: list[Record], checkin_partitions: int = 1, dead_letters: DeadLetters | None = None
) -> list[OutgoingRecord]:
    """The typed records (and dead letters) of a batch. A record whose step raises anything is
    dead-lettered; DeadLetterLimitExceeded if most recent records failed (nothing to forward)."""
    dead_letters = dead_letters or DeadLetters(GROUP)

    def step(record: Record) -> list[OutgoingRecord]:
        if record.header(TICK_HEADER) is not None:
            # A stream-clock tick (services/monitors): fan out to every typed.checkins
            # partition, after every check-in of this raw partition read before it.
            return forward_tick(record, checkin_partitions)
        return normalize(record)

    out: list[OutgoingRecord] = []
    dead: list[OutgoingRecord] = []
    for _, typed in dead_letters.each(records, step, dead):
        out += typed
    dead_letters.check(len(records), len(dead))
    out.extend(dead)
    return out


class Normalizer:
    def __init__(self, bus: Bus, batch: int = 1000, dead_letters: DeadLetterPolicy | None = None) -> None:
        self._dead_letters = DeadLetters(GROUP, dead_letters)
        self._consumer = bus.consumer(GROUP, list(NORMALIZERS))
        self._producer = bus.producer()
        self._batch = batch
        self._checkin_partitions = bus.partitions(TYPED_CHECKINS)
        self._stopping = asyncio.Event()
        self.ready = False
        # A rebalance waits for the batch in flight to be forwarded and committed, so the
        # next owner does not normalize it again.
        self._guard = RebalanceGuard(self._consumer)

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
                records, polled_at = await self._guard.poll(self._batch, timeout_s=0.2)
                async with self._guard.lock:
                    records = self._guard.fresh(records, polled_at)
                    if records:
                        count_consumed(GROUP, records)
                        PROCESSOR_BATCH_SIZE.labels(service=GROUP).observe(len(records))
                        out = process_batch(records, self._checkin_partitions, self._dead_letters)
                        await self._forward(out)
                        await self._consumer.commit(next_offsets(records))
                await lag.maybe_report({})
        finally:
            self.ready = False
            await self._consumer.stop()
            await self._producer.stop()

    async def _forward(self, out: list[OutgoingRecord]) -> None:
        attempt = 0
        while True:
            try:
                await self._producer.send_many(out)
                return
            except BusUnavailable as err:  # the bus is down or slow: retry, never commit past it
                PROCESSOR_RETRIES.labels(service=GROUP, reason=type(err).__name__).inc()
                log.warning("append failed; retrying", extra={"error": repr(err), "attempt": attempt})
                await backoff(attempt)
                attempt += 1
