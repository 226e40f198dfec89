"""Byte bounds of the embedded log: frames of at most ``FRAME_DATA_BYTES``, polls of at most
``max_poll_bytes``, and a read-ahead bounded per partition, with every record read back
exactly once and in order (a record larger than a bound still goes through, alone).
"""

from __future__ import annotations

import asyncio
import os
import tracemalloc
from pathlib import Path

import pytest

from forgeline.bus.embedded import EmbeddedBus, EmbeddedConsumer
from forgeline.bus.embedded.framing import BATCH, FRAME_DATA_BYTES, Scanner, encode_frames
from forgeline.bus.embedded.layout import segments
from forgeline.bus.port import OutgoingRecord, Record, TopicPartition
from forgeline.bus.retention import RetentionPolicy, TopicRetention

pytestmark = pytest.mark.unit

TOPIC = "raw.limits"
MIB = 1 << 20


def make_bus(root: Path, partitions: int = 1) -> EmbeddedBus:
    policy = RetentionPolicy(default=TopicRetention(segment_bytes=1 << 30, segment_ms=None, retention_ms=None))
    return EmbeddedBus(root, default_partitions=partitions, fsync=False, retention=policy)


def record(i: int, size: int, partition: int | None = 0) -> OutgoingRecord:
    # The index first, so every value is distinct and a record read twice or out of order shows.
    value = (b"%08d|" % i).ljust(size, b"x")
    return OutgoingRecord(TOPIC, value, key=b"k%d" % i, headers=(("n", b"%d" % i),), partition=partition)


def frame_table(path: Path) -> list[tuple[int, int, int, int]]:
    """(version, first offset, record count, data bytes) of every frame in a segment file."""
    fd = os.open(path, os.O_RDONLY)
    try:
        scanner = Scanner(fd, 0)
        found = []
        while (frame := scanner.next()) is not None:
            records = frame.records(TOPIC, 0)
            headers = sum(8 + len(n) + len(v) for r in records for n, v in r.headers)
            data = headers + sum(len(r.key or b"") + len(r.value) for r in records)
            found.append((frame.version, frame.offset, frame.count, data))
        assert scanner.stopped == "end", scanner.stopped
        return found
    finally:
        os.close(fd)


def same(got: list[Record], sent: list[OutgoingRecord], first_offset: int = 0) -> None:
    assert [r.offset for r in got] == list(range(first_offset, first_offset + len(sent)))
    assert [(r.key, r.value, r.headers) for r in got] == [(s.key, s.value, s.headers) for s in sent]


async def drain(consumer: EmbeddedConsumer, max_records: int) -> list[list[Record]]:
    polls: list[list[Record]] = []
    while batch := await consumer.poll(max_records, timeout_s=0):
        polls.append(batch)
    return polls


def test_an_append_larger_than_the_frame_bound_is_several_frames_read_back_exactly(tmp_path: Path) -> None:
    bus = make_bus(tmp_path)
    # ~3 MiB of small records, a record three times the bound, then more small ones: one append.
    sent = [record(i, 1000) for i in range(3000)]
    sent.insert(1500, record(-1, 3 * FRAME_DATA_BYTES))

    async def main() -> list[Record]:
        producer = bus.producer()
        await producer.send_many(sent)
        await producer.stop()
        reader = bus.reader([TOPIC])
        await reader.start()
        got = [r for batch in await drain(reader, 700) for r in batch]
        await reader.stop()
        return got

    same(asyncio.run(main()), sent)
    table = frame_table(segments(bus.partition_dir(TOPIC, 0))[0].path)
    assert len(table) >= 5, table
    assert all(version == BATCH for version, *_ in table)
    # Consecutive offsets across the frames of one append, none lost or doubled.
    assert [offset for _, offset, _, _ in table] == [sum(c for _, _, c, _ in table[:i]) for i in range(len(table))]
    big = [(count, data) for _, _, count, data in table if data > FRAME_DATA_BYTES]
    assert big == [(1, big[0][1])]  # the oversized record is alone in its frame
    assert big[0][1] > 3 * FRAME_DATA_BYTES


@pytest.mark.parametrize("bound", [1, 100, 4096, 10_000])
def test_frames_cut_at_record_boundaries_within_the_bound(tmp_path: Path, bound: int) -> None:
    sizes = [0, 1, 50, 99, 100, 101, 3000, 4096, 5000, 7, 7, 7, 12_000, 2]
    records = [OutgoingRecord(TOPIC, b"v" * n) for n in sizes]
    path = tmp_path / "segment"
    path.write_bytes(encode_frames(40, 5, records, max_data_bytes=bound))
    table = frame_table(path)
    assert sum(count for _, _, count, _ in table) == len(records)
    assert [offset for _, offset, _, _ in table] == [40 + sum(c for _, _, c, _ in table[:i]) for i in range(len(table))]
    for _, _, count, data in table:
        assert data <= bound or count == 1
    # Greedy: a frame is cut only where the next record would not fit.
    starts = [offset - 40 for _, offset, _, _ in table]
    for i, start in enumerate(starts[1:], 1):
        assert table[i - 1][3] + sizes[start] > bound


def test_a_poll_returns_at_most_its_bytes_and_a_larger_record_alone(tmp_path: Path) -> None:
    bus = make_bus(tmp_path)
    sizes = [300_000] * 10 + [2 * MIB] + [10_000] * 50
    sent = [record(i, n) for i, n in enumerate(sizes)]

    async def main() -> tuple[list[list[Record]], list[list[Record]]]:
        producer = bus.producer()
        for i in range(0, len(sent), 7):  # several appends, frames of mixed sizes
            await producer.send_many(sent[i : i + 7])
        await producer.stop()
        consumer = EmbeddedConsumer(bus, [TOPIC], "g", max_poll_bytes=MIB)
        await consumer.start()
        polls = [await consumer.poll(5000, timeout_s=0) for _ in range(3)]
        # Commit inside whatever frame the budget cut, restart: exactly the rest.
        last = polls[-1][-1].offset + 1
        await consumer.commit({TopicPartition(TOPIC, 0): last})
        await consumer.stop()
        again = EmbeddedConsumer(bus, [TOPIC], "g", max_poll_bytes=MIB)
        await again.start()
        rest = await drain(again, 5000)
        await again.stop()
        return polls, rest

    first, rest = asyncio.run(main())
    polls = first + rest
    same([r for batch in polls for r in batch], sent)
    for batch in polls:
        size = sum(len(r.value) + len(r.key or b"") for r in batch)
        assert size <= MIB or len(batch) == 1
    assert any(len(batch) == 1 and len(batch[0].value) == 2 * MIB for batch in polls)


def test_a_backlog_on_every_partition_is_read_a_budget_at_a_time(tmp_path: Path) -> None:
    """Four partitions of 16 MiB each: a poll of 5000 records holds about its 16 MiB, not 64."""
    partitions = 4
    bus = make_bus(tmp_path, partitions)
    per_partition = 64
    sent = {p: [record(p * 1000 + i, 256 << 10, partition=p) for i in range(per_partition)] for p in range(partitions)}

    async def write() -> None:
        producer = bus.producer()
        for records in sent.values():
            await producer.send_many(records)
        await producer.stop()

    asyncio.run(write())

    async def read() -> tuple[list[list[Record]], int]:
        consumer = bus.consumer("g", [TOPIC])
        await consumer.start()
        tracemalloc.start()
        try:
            first = await consumer.poll(5000, timeout_s=0)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        polls = [first, *await drain(consumer, 5000)]
        await consumer.stop()
        return polls, peak

    polls, peak = asyncio.run(read())
    # The first poll's own bytes and what it read ahead: the budget plus about a frame per
    # partition (each read twice over while a frame is decoded), far below the 64 MiB backlog.
    assert sum(len(r.value) for r in polls[0]) <= 16 * MIB
    assert peak < 40 * MIB, peak
    assert len(polls) >= 4
    # Fair across partitions: the first poll has records of every partition.
    assert {r.partition for r in polls[0]} == set(range(partitions))
    for p in range(partitions):
        same([r for batch in polls for r in batch if r.partition == p], sent[p])
