"""What every consumer service shares: poll, hand a batch to a step, commit, report lag."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Mapping

from forgeline.bus.port import Consumer, Record, TopicPartition
from forgeline.telemetry.metrics import PROCESSOR_CONSUMED, PROCESSOR_LAG

log = logging.getLogger(__name__)


def next_offsets(records: Iterable[Record]) -> dict[TopicPartition, int]:
    """The offsets to commit once ``records`` are done: last offset + 1 per partition."""
    offsets: dict[TopicPartition, int] = {}
    for record in records:
        tp = record.tp
        if record.offset + 1 > offsets.get(tp, -1):
            offsets[tp] = record.offset + 1
    return offsets


def count_consumed(service: str, records: Iterable[Record]) -> None:
    per_topic: dict[str, int] = {}
    for record in records:
        per_topic[record.topic] = per_topic.get(record.topic, 0) + 1
    for topic, n in per_topic.items():
        PROCESSOR_CONSUMED.labels(service=service, topic=topic).inc(n)


class LagReporter:
    """Updates the lag gauge every ``interval_s`` (end offset − committed, per topic)."""

    def __init__(self, service: str, consumer: Consumer, interval_s: float = 5.0) -> None:
        self._service = service
        self._consumer = consumer
        self._interval_s = interval_s
        self._last = 0.0

    async def maybe_report(self, committed: Mapping[TopicPartition, int]) -> None:
        now = time.monotonic()
        if now - self._last < self._interval_s:
            return
        self._last = now
        ends = await self._consumer.end_offsets()
        per_topic: dict[str, int] = {}
        for tp, end in ends.items():
            done = committed.get(tp)
            if done is None:
                done = await self._consumer.committed(tp)
            per_topic[tp.topic] = per_topic.get(tp.topic, 0) + max(end - done, 0)
        for topic, lag in per_topic.items():
            PROCESSOR_LAG.labels(service=self._service, topic=topic).set(lag)


async def backoff(attempt: int, cap_s: float = 10.0) -> None:
    await asyncio.sleep(min(0.1 * 2**attempt, cap_s))
