"""RebalanceGuard (forgeline.processing.loop): which polled records a revocation makes stale.

A revocation that runs *during* a poll has replaced the assignment before the poll returns,
and a Kafka consumer then returns records of the new assignment only, its positions already
past them: they must be kept, or nobody reads them again (the scale benchmark lost a batch
this way). A revocation that runs after the poll returned makes them stale: they are
re-read from the group's commit.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import cast

import pytest

from forgeline.bus.port import AssignHandler, Consumer, Record, RevokeHandler, TopicPartition
from forgeline.processing.loop import RebalanceGuard

pytestmark = pytest.mark.unit

RECORDS = [Record("typed.errors", 1, offset, b"k", b"{}", 0) for offset in range(3)]


class _Consumer:
    """Only what the guard uses: the revoke/assign registrations and ``poll``."""

    def __init__(self) -> None:
        self.revoke: RevokeHandler | None = None
        self.during_poll: Callable[[], Awaitable[None]] | None = None

    def on_revoke(self, handler: RevokeHandler) -> None:
        self.revoke = handler

    def on_assign(self, handler: AssignHandler) -> None:
        pass

    async def poll(self, max_records: int, timeout_s: float) -> list[Record]:
        if self.during_poll is not None:
            await self.during_poll()
        return RECORDS[:max_records]


def _revoke(consumer: _Consumer) -> Awaitable[None]:
    assert consumer.revoke is not None
    return consumer.revoke({TopicPartition("typed.errors", 1)})


def test_records_of_a_poll_during_which_a_revocation_ran_are_kept() -> None:
    async def scenario() -> list[Record]:
        consumer = _Consumer()
        guard = RebalanceGuard(cast(Consumer, consumer))
        consumer.during_poll = lambda: _revoke(consumer)
        records, polled_at = await guard.poll(10, timeout_s=0.2)
        async with guard.lock:
            return guard.fresh(records, polled_at)

    assert asyncio.run(scenario()) == RECORDS


def test_records_a_poll_returned_before_a_revocation_ran_are_dropped() -> None:
    async def scenario() -> list[Record]:
        consumer = _Consumer()
        flushed: list[set[TopicPartition]] = []

        async def handler(partitions: set[TopicPartition]) -> None:
            flushed.append(partitions)

        guard = RebalanceGuard(cast(Consumer, consumer), handler)
        records, polled_at = await guard.poll(10, timeout_s=0.2)
        await _revoke(consumer)  # e.g. while the loop waited for the lock
        async with guard.lock:
            kept = guard.fresh(records, polled_at)
        assert flushed == [{TopicPartition("typed.errors", 1)}]
        return kept

    assert asyncio.run(scenario()) == []


def test_without_a_revocation_every_record_is_kept() -> None:
    async def scenario() -> list[Record]:
        guard = RebalanceGuard(cast(Consumer, _Consumer()))
        records, polled_at = await guard.poll(2, timeout_s=0.2)
        async with guard.lock:
            return guard.fresh(records, polled_at)

    assert asyncio.run(scenario()) == RECORDS[:2]
