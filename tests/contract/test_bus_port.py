"""The bus port's contract, one suite run on both adapters (embedded disk log and Kafka)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from forgeline.bus.embedded import EmbeddedBus
from forgeline.bus.factory import create_bus
from forgeline.bus.port import Bus, Consumer, OutgoingRecord, Record, TopicPartition, partition_for
from forgeline.processing.loop import next_offsets

pytestmark = [pytest.mark.contract, pytest.mark.xdist_group("kafka")]
PARTITIONS = 3


@pytest.fixture(params=["embedded", "kafka"])
def bus(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Bus]:
    if request.param == "embedded":
        yield EmbeddedBus(tmp_path / "bus", default_partitions=PARTITIONS, fsync=False)
        return
    broker = request.getfixturevalue("kafka_broker")  # started only when a Kafka case runs
    # A patient send timeout: the contract is about what arrives, not how fast (shared hosts).
    yield create_bus(f"kafka://{broker.bootstrap}?send_timeout_ms=10000", PARTITIONS)


def _topic() -> str:
    return f"contract.{uuid.uuid4().hex[:12]}"


async def _send(bus: Bus, records: list[OutgoingRecord]) -> None:
    producer = bus.producer()
    await producer.start()
    try:
        await producer.send_many(records)
    finally:
        await producer.stop()


async def _poll_until(consumer: Consumer, count: int, timeout_s: float = 20.0) -> list[Record]:
    """Poll until ``count`` records arrived (a Kafka group needs a moment to assign partitions)."""
    out: list[Record] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while len(out) < count and loop.time() < deadline:
        out += await consumer.poll(max(count - len(out), 1), timeout_s=0.2)
    return out


async def _drain(consumer: Consumer, settle_s: float = 1.0) -> list[Record]:
    """Everything that arrives until nothing has for ``settle_s``."""
    out: list[Record] = []
    while batch := await consumer.poll(1000, timeout_s=settle_s):
        out += batch
    return out


def _records(topic: str, n: int) -> list[OutgoingRecord]:
    return [
        OutgoingRecord(topic, f"value-{i}".encode(), key=f"key-{i}".encode(), headers=(("n", str(i).encode()),))
        for i in range(n)
    ]


def test_keyed_records_land_in_partition_for_key(bus: Bus) -> None:
    topic = _topic()

    async def run() -> list[Record]:
        await _send(bus, _records(topic, 60))
        reader = bus.reader([topic])
        await reader.start()
        try:
            return await _poll_until(reader, 60)
        finally:
            await reader.stop()

    got = asyncio.run(run())
    assert len(got) == 60
    for record in got:
        assert record.key is not None
        assert record.partition == partition_for(record.key, PARTITIONS)
    # Order within a partition is the send order.
    for partition in range(PARTITIONS):
        numbers = [int(r.value.split(b"-")[1]) for r in got if r.partition == partition]
        assert numbers == sorted(numbers)


def test_send_then_poll_returns_key_value_headers(bus: Bus) -> None:
    topic = _topic()

    async def run() -> list[Record]:
        await _send(bus, _records(topic, 20))
        consumer = bus.consumer(f"g-{uuid.uuid4().hex[:8]}", [topic])
        await consumer.start()
        try:
            return await _poll_until(consumer, 20)
        finally:
            await consumer.stop()

    got = asyncio.run(run())
    assert sorted(r.value for r in got) == sorted(f"value-{i}".encode() for i in range(20))
    for record in got:
        i = int(record.value.split(b"-")[1])
        assert record.key == f"key-{i}".encode()
        assert record.header("n") == str(i).encode()
        assert record.timestamp_ms > 0


def test_commit_then_a_new_consumer_resumes_after_it(bus: Bus) -> None:
    topic = _topic()
    group = f"g-{uuid.uuid4().hex[:8]}"

    async def run() -> tuple[list[Record], list[Record], dict[TopicPartition, int], dict[TopicPartition, int]]:
        await _send(bus, _records(topic, 30))
        first = bus.consumer(group, [topic])
        await first.start()
        try:
            seen = await _poll_until(first, 30)
            done = [r for r in seen if int(r.value.split(b"-")[1]) < 15]
            offsets = next_offsets(done)
            # Commit per partition only a prefix: records of a partition come in offset order.
            prefix = [r for r in seen if r.offset < offsets.get(r.tp, 0)]
            await first.commit(next_offsets(prefix))
            committed = {tp: await first.committed(tp) for tp in first.assignment()}
            ends = await first.end_offsets()
        finally:
            await first.stop()
        second = bus.consumer(group, [topic])
        await second.start()
        try:
            rest = await _drain(second)
        finally:
            await second.stop()
        return prefix, rest, committed, ends

    prefix, rest, committed, ends = asyncio.run(run())
    assert sum(ends.values()) == 30
    assert committed == {tp: next_offsets(prefix).get(tp, 0) for tp in committed}
    assert {r.value for r in prefix}.isdisjoint({r.value for r in rest})
    assert len(prefix) + len(rest) == 30
    for record in rest:
        assert record.offset >= committed[record.tp]


def test_uncommitted_records_are_redelivered(bus: Bus) -> None:
    topic = _topic()
    group = f"g-{uuid.uuid4().hex[:8]}"

    async def run() -> tuple[list[Record], list[Record]]:
        await _send(bus, _records(topic, 12))
        first = bus.consumer(group, [topic])
        await first.start()
        try:
            seen = await _poll_until(first, 12)
        finally:
            await first.stop()  # nothing committed
        second = bus.consumer(group, [topic])
        await second.start()
        try:
            again = await _poll_until(second, 12)
        finally:
            await second.stop()
        return seen, again

    seen, again = asyncio.run(run())
    assert sorted(r.value for r in seen) == sorted(r.value for r in again)
    assert len(again) == 12


def test_reader_reads_from_zero_and_never_commits(bus: Bus) -> None:
    topic = _topic()
    group = f"g-{uuid.uuid4().hex[:8]}"

    async def run() -> tuple[list[Record], list[Record], int]:
        await _send(bus, _records(topic, 9))
        consumer = bus.consumer(group, [topic])
        await consumer.start()
        try:
            await consumer.commit(next_offsets(await _poll_until(consumer, 9)))
        finally:
            await consumer.stop()
        runs = []
        for _ in range(2):
            reader = bus.reader([topic])
            await reader.start()
            try:
                got = await _poll_until(reader, 9)
                await reader.commit(next_offsets(got))  # a no-op for a reader
                committed = await reader.committed(TopicPartition(topic, 0))
            finally:
                await reader.stop()
            runs.append(got)
        return runs[0], runs[1], committed

    first, second, committed = asyncio.run(run())
    assert len(first) == len(second) == 9
    assert min(r.offset for r in first) == 0
    assert committed == 0


def test_capabilities_name_the_adapter(bus: Bus) -> None:
    assert bus.capabilities.name in ("embedded", "kafka")
    assert bus.capabilities.shared_groups is (bus.capabilities.name == "kafka")


def test_consumers_of_one_group_share_partitions_or_are_refused(bus: Bus) -> None:
    """Kafka splits the partitions and tells the old owner first; the embedded bus refuses a second consumer."""
    topic = _topic()
    group = f"g-{uuid.uuid4().hex[:8]}"

    async def run() -> None:
        await _send(bus, _records(topic, 30))
        first = bus.consumer(group, [topic])
        revoked: list[set[TopicPartition]] = []

        async def on_revoke(partitions: set[TopicPartition]) -> None:
            revoked.append(partitions)

        first.on_revoke(on_revoke)
        assigned: list[set[TopicPartition]] = []

        async def on_assign(partitions: set[TopicPartition]) -> None:
            # Called before any record of these partitions is polled: they are owned by now.
            assert partitions <= first.assignment()
            assigned.append(partitions)

        first.on_assign(on_assign)
        await first.start()
        second = bus.consumer(group, [topic])
        try:
            await _poll_until(first, 1)
            if not bus.capabilities.shared_groups:
                with pytest.raises(RuntimeError):
                    await second.start()
                return
            await second.start()
            got: list[Record] = []
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 20
            # Both keep polling (heartbeats and rebalance progress) until the split is done.
            while loop.time() < deadline and not (first.assignment() and second.assignment()):
                got += await first.poll(100, 0.1) + await second.poll(100, 0.1)
            assert first.assignment() and second.assignment()
            assert first.assignment().isdisjoint(second.assignment())
            assert first.assignment() | second.assignment() == {TopicPartition(topic, p) for p in range(PARTITIONS)}
            assert revoked and revoked[0] == {TopicPartition(topic, p) for p in range(PARTITIONS)}
            # Assigned everything at the join, then its share after the second one joined.
            assert assigned[0] == revoked[0]
            assert assigned[-1] == first.assignment()
        finally:
            await second.stop()
            await first.stop()

    asyncio.run(run())
