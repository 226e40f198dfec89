"""The processor host: the one consumer loop every processor runs in.

A processor is a *strategy* (what to do with records) run by a ``ProcessorHost`` (everything
else). The host starts and stops the producer and the consumer, polls through a
``RebalanceGuard``, counts what it consumed, reports lag, and owns the only ``commit`` of
the processors: a strategy moves offsets through the ``commit`` callback of its
``Runtime``, never through the consumer.

A strategy has four verbs, after Arroyo's processing strategies:

- ``submit(records)``: a fresh batch (never empty), under the guard's lock;
- ``poll()``: every loop turn, under the lock, records or not (time-based flushes);
- ``join()``: write and commit everything buffered — before partitions are revoked (so the
  next owner starts after our output: nothing twice, nothing lost) and at a graceful stop;
- ``close()``: release what ``start`` took, on the way out whatever happened.

plus ``start()`` (load state, once the consumer started), ``assigned()`` (new partitions
arrived: reload per-partition state before the next batch), ``revoked()`` (after the join
of a revocation: forget per-partition state) and ``capacity()`` (how many records to poll,
and how long to wait for them).

Dead letters: the runtime's ``DeadLetters`` is the one per processor; a strategy runs its
per-record work through it (``each``/``guarded``/``reject``) so that an exception for one
record dead-letters that record, and calls ``runtime.settle`` once per batch, which checks
the ratio limit (raising ``DeadLetterLimitExceeded`` before anything of the batch is
appended or committed) and appends the batch's dead letters.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypedDict, Unpack

from forgeline.bus.port import Bus, Consumer, OutgoingRecord, Producer, Record, TopicPartition
from forgeline.clock import Clock, SystemClock
from forgeline.processing.deadletter import DeadLetterPolicy, DeadLetters
from forgeline.processing.loop import LagReporter, RebalanceGuard, count_consumed
from forgeline.processing.sinks import send_with_retry
from forgeline.telemetry.metrics import PROCESSOR_BATCH_SIZE

log = logging.getLogger(__name__)

DEFAULT_POLL_TIMEOUT_S = 0.2


class Strategy:
    """What a processor does with its records; every verb does nothing by default."""

    def capacity(self) -> tuple[int, float]:
        """(records to poll at most — 0 to skip the poll —, seconds to wait for them)."""
        raise NotImplementedError

    async def start(self) -> None:
        return None

    async def assigned(self) -> None:
        return None

    async def submit(self, records: list[Record]) -> None:
        raise NotImplementedError

    async def poll(self) -> None:
        return None

    async def join(self) -> None:
        return None

    async def revoked(self, partitions: set[TopicPartition]) -> None:
        """After ``join`` on a revocation: forget per-partition state (it may change elsewhere)."""
        return None

    async def close(self) -> None:
        return None


@dataclass
class Runtime:
    """What the host lends its strategy: the bus ends, the dead letters, the clock, ``commit``."""

    name: str
    bus: Bus
    consumer: Consumer
    producer: Producer
    dead_letters: DeadLetters
    clock: Clock
    stopping: asyncio.Event
    host: ProcessorHost

    async def commit(self, offsets: Mapping[TopicPartition, int], records: int | None = None) -> None:
        """Commit ``offsets`` (the next offset to read per partition); ``records``: the batch's size."""
        await self.host.commit(offsets, records)

    async def settle(self, processed: int, dead: Sequence[OutgoingRecord]) -> None:
        """Close a batch's dead-letter account: the limit first, then its dead letters appended."""
        self.dead_letters.check(processed, len(dead))
        await send_with_retry(self.producer, dead, self.name)


class HostOptions(TypedDict, total=False):
    """What every processor's constructor passes on to its host."""

    dead_letters: DeadLetterPolicy | None  # the dead-letter ratio limit (FORGELINE_DLQ_*)
    clock: Clock | None  # batchers' and lag reports' time (tests pass a FakeClock)


class ProcessorHost:
    """Runs one strategy on one consumer group; ``run`` until ``stop``."""

    def __init__(
        self,
        name: str,
        bus: Bus,
        topics: Sequence[str],
        make_strategy: Callable[[Runtime], Strategy],
        **options: Unpack[HostOptions],
    ) -> None:
        dead_letters, clock = options.get("dead_letters"), options.get("clock")
        self.name = name
        self._consumer = bus.consumer(name, list(topics))
        self._producer = bus.producer()
        self._stopping = asyncio.Event()
        self.ready = False
        self.runtime = Runtime(
            name, bus, self._consumer, self._producer, DeadLetters(name, dead_letters), clock or SystemClock(),
            self._stopping, self,
        )  # fmt: skip
        self.strategy = make_strategy(self.runtime)
        # A revocation waits for the batch in flight, then the strategy's join writes and
        # commits what it holds: the partitions' next owner starts right after it.
        self._guard = RebalanceGuard(self._consumer, self._revoked)

    def stop(self) -> None:
        self._stopping.set()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    async def commit(self, offsets: Mapping[TopicPartition, int], records: int | None = None) -> None:
        if records is not None:
            PROCESSOR_BATCH_SIZE.labels(service=self.name).observe(records)
        if offsets:
            await self._consumer.commit(dict(offsets))

    async def _revoked(self, partitions: set[TopicPartition]) -> None:
        await self.strategy.join()
        await self.strategy.revoked(partitions)

    async def run(self) -> None:
        await self._producer.start()
        await self._consumer.start()
        strategy, guard = self.strategy, self._guard
        try:
            assigned_at = guard.assignments
            await strategy.start()
            lag = LagReporter(self.name, self._consumer, clock=self.runtime.clock)
            self.ready = True
            while not self._stopping.is_set():
                room, timeout_s = strategy.capacity()
                records, polled_at = await guard.poll(room, timeout_s) if room > 0 else ([], guard.generation)
                async with guard.lock:
                    records = guard.fresh(records, polled_at)
                    if assigned_at != guard.assignments:
                        assigned_at = guard.assignments
                        await strategy.assigned()
                    if records:
                        count_consumed(self.name, records)
                        await strategy.submit(records)
                    await strategy.poll()
                await lag.maybe_report({})
            async with guard.lock:
                # Graceful stop: write and commit what is buffered before leaving.
                await strategy.join()
        finally:
            self.ready = False
            try:
                await strategy.close()
            finally:
                await self._consumer.stop()
                await self._producer.stop()
