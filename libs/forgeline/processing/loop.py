"""What every consumer service shares: poll, hand a batch to a step, commit, report lag."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping

from forgeline.bus.port import BusUnavailable, Consumer, Record, RevokeHandler, TopicPartition
from forgeline.clock import Clock, SystemClock
from forgeline.processing.retry import backoff as backoff
from forgeline.telemetry.metrics import PROCESSOR_CONSUMED, PROCESSOR_LAG

log = logging.getLogger(__name__)


def next_offsets(records: Iterable[Record]) -> dict[TopicPartition, int]:
    """The offsets to commit once ``records`` are done: last offset + 1 per partition."""
    # Keyed by plain (topic, partition) tuples, which hash and compare as TopicPartition does:
    # no object per record.
    offsets: dict[tuple[str, int], int] = {}
    for record in records:
        tp = (record.topic, record.partition)
        if record.offset + 1 > offsets.get(tp, -1):
            offsets[tp] = record.offset + 1
    return {TopicPartition(*tp): offset for tp, offset in offsets.items()}


def count_consumed(service: str, records: Iterable[Record]) -> None:
    per_topic: dict[str, int] = {}
    for record in records:
        per_topic[record.topic] = per_topic.get(record.topic, 0) + 1
    for topic, n in per_topic.items():
        PROCESSOR_CONSUMED.labels(service=service, topic=topic).inc(n)


class LagReporter:
    """Updates the lag gauge every ``interval_s`` (end offset − committed, per topic)."""

    def __init__(self, service: str, consumer: Consumer, interval_s: float = 5.0, clock: Clock | None = None) -> None:
        self._service = service
        self._consumer = consumer
        self._interval_s = interval_s
        self._clock = clock or SystemClock()
        self._last: float | None = None

    async def maybe_report(self, committed: Mapping[TopicPartition, int]) -> None:
        now = self._clock.monotonic()
        if self._last is not None and now - self._last < self._interval_s:
            return
        self._last = now
        per_topic: dict[str, int] = {}
        try:
            ends = await self._consumer.end_offsets()
            for tp, end in ends.items():
                done = committed.get(tp)
                if done is None:
                    done = await self._consumer.committed(tp)
                per_topic[tp.topic] = per_topic.get(tp.topic, 0) + max(end - done, 0)
        except BusUnavailable as err:
            # A metric is not worth stopping the service for: the next report retries.
            log.warning("lag not reported: bus unavailable", extra={"service": self._service, "error": str(err)})
            return
        for topic, lag in per_topic.items():
            PROCESSOR_LAG.labels(service=self._service, topic=topic).set(lag)


class RebalanceGuard:
    """Keeps a consumer's batch work and its partition revocations apart (Kafka groups).

    The loop polls through ``poll`` and holds ``lock`` from the end of a poll to its
    commit; a revocation waits for it, runs the service's own handler (flush what is
    buffered) and bumps ``generation``. Records a poll returned before a revocation ran are
    stale: ``fresh`` drops them, and they come back from the group's last commit (the
    adapter re-reads from there on every new assignment), to this consumer or to the
    partition's new owner — never to both. ``assignments`` counts the assignments received
    after start (Kafka hands partitions over after the group join, not in ``start``): a service holding
    per-partition state reloads it when the count moves, under the lock, before it
    processes the next batch. On the embedded bus nothing is ever revoked or reassigned
    and this costs one lock per batch.
    """

    def __init__(self, consumer: Consumer, handler: RevokeHandler | None = None) -> None:
        self._consumer = consumer
        self.lock = asyncio.Lock()
        self.generation = 0
        self.assignments = 0
        self._handler = handler
        consumer.on_revoke(self._revoked)
        consumer.on_assign(self._assigned)

    async def _assigned(self, partitions: set[TopicPartition]) -> None:
        # No await: it runs before the adapter can return any record of ``partitions``.
        self.assignments += 1

    async def _revoked(self, partitions: set[TopicPartition]) -> None:
        async with self.lock:
            try:
                if self._handler is not None:
                    await self._handler(partitions)
            finally:
                self.generation += 1

    async def poll(self, max_records: int, timeout_s: float) -> tuple[list[Record], int]:
        """Poll; return the records and the generation to hand to ``fresh`` with them.

        The generation is read when the poll returns, not before it: a revocation that ran
        *during* the poll has already replaced the assignment, and the consumer returns only
        records of the new one (aiokafka waits for a reassignment to finish), with its
        positions already past them — dropping those would lose them (the next commit covers
        them). Only a revocation that runs after the poll returned, while the loop waits for
        ``lock``, makes them stale.
        """
        records = await self._consumer.poll(max_records, timeout_s)
        return records, self.generation

    def fresh(self, records: list[Record], polled_at: int) -> list[Record]:
        """``records`` if no revocation ran since they were polled (``polled_at`` = generation then)."""
        if polled_at != self.generation and records:
            log.info("dropping records polled before a rebalance", extra={"records": len(records)})
            return []
        return records
