"""Batch frames in the embedded log, and logs written by the previous release (single-record frames).

An append of many records is one frame; offsets stay per record (commits and seeks in the
middle of a frame); segments left by the previous release are read, appended to, committed
in and compacted in place, with nothing lost or doubled.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from pathlib import Path

import pytest

from forgeline.bus.embedded import EmbeddedBus, EmbeddedConsumer
from forgeline.bus.embedded.framing import BATCH, SINGLE, Scanner, encode_batch
from forgeline.bus.embedded.layout import segment_name, segments
from forgeline.bus.port import OutgoingRecord, Record, TopicPartition
from forgeline.bus.retention import RetentionPolicy, TopicRetention
from tests.unit.bus.previous_format import encode_record_v1

pytestmark = pytest.mark.unit

TOPIC = "raw.test"
COMPACTED = "control.test"
TP = TopicPartition(TOPIC, 0)
OLD_MS = 1_700_000_000_000  # the append time the previous release wrote


def make_bus(root: Path, segment_bytes: int = 64 << 20) -> EmbeddedBus:
    policy = RetentionPolicy(
        default=TopicRetention(segment_bytes=segment_bytes, segment_ms=None, retention_ms=None),
        compacted=frozenset({COMPACTED}),
    )
    return EmbeddedBus(root, default_partitions=1, fsync=False, retention=policy)


def record(i: int) -> OutgoingRecord:
    # Varied shapes: with and without key and headers, empty and non-ASCII values.
    headers = (("n", b"%d" % i), ("é", b"")) if i % 3 else ()
    value = b"" if i % 7 == 6 else f"v{i}-ü".encode()
    return OutgoingRecord(TOPIC, value, key=b"k%d" % i if i % 2 else None, headers=headers)


def frames(path: Path, start: int = 0) -> list[tuple[int, int, int]]:
    """(version, first offset, record count) of every frame in a segment file."""
    fd = os.open(path, os.O_RDONLY)
    try:
        scanner = Scanner(fd, start, base=start)
        found = []
        while (frame := scanner.next()) is not None:
            found.append((frame.version, frame.offset, frame.count))
        assert scanner.stopped == "end", scanner.stopped
        return found
    finally:
        os.close(fd)


def write_previous_release(bus: EmbeddedBus, topic: str, per_segment: list[list[OutgoingRecord]]) -> list[int]:
    """Segments of partition 0 as the previous release left them: single-record frames, the
    closed segments read-only. Returns the logical position of every record's frame."""
    bus.partitions(topic)  # the topic directory, meta.json and the first (empty) segment
    directory = bus.partition_dir(topic, 0)
    start = offset = 0
    positions: list[int] = []
    for i, records in enumerate(per_segment):
        path = directory / segment_name(start, offset)
        data = b""
        for r in records:
            positions.append(start + len(data))
            data += encode_record_v1(offset, OLD_MS, r)
            offset += 1
        path.write_bytes(data)
        if i < len(per_segment) - 1:
            os.chmod(path, 0o400)  # closed, as a roll leaves it
        start += len(data)
    return positions


async def drain(consumer: EmbeddedConsumer, max_records: int = 1000) -> list[Record]:
    out: list[Record] = []
    while batch := await consumer.poll(max_records, timeout_s=0):
        out += batch
    return out


async def read_all(bus: EmbeddedBus, topic: str = TOPIC, max_records: int = 1000) -> list[Record]:
    reader = bus.reader([topic])
    await reader.start()
    records = await drain(reader, max_records)
    await reader.stop()
    return records


async def consume(bus: EmbeddedBus, count: int | None = None, commit: int | None = None) -> list[Record]:
    """Start group "g", poll (up to ``count`` records), commit ``commit`` if given, stop."""
    consumer = bus.consumer("g", [TOPIC])
    await consumer.start()
    if count is None:
        got = await drain(consumer, max_records=7)
    else:
        got = await consumer.poll(count, timeout_s=0)
    if commit is not None:
        await consumer.commit({TP: commit})
    await consumer.stop()
    return got


def same(got: list[Record], sent: list[OutgoingRecord], first_offset: int = 0) -> None:
    assert [r.offset for r in got] == list(range(first_offset, first_offset + len(sent)))
    assert [(r.key, r.value, r.headers) for r in got] == [(s.key, s.value, s.headers) for s in sent]


def test_an_append_of_many_records_is_one_frame_with_per_record_offsets(tmp_path: Path) -> None:
    bus = make_bus(tmp_path)
    sent = [record(i) for i in range(50)]

    async def main() -> list[Record]:
        producer = bus.producer()
        await producer.send_many(sent[:30])
        await producer.send_many(sent[30:])
        await producer.stop()
        return await read_all(bus, max_records=13)

    got = asyncio.run(main())
    same(got, sent)
    assert len({r.timestamp_ms for r in got[:30]}) == 1  # one append time per frame
    path = segments(bus.partition_dir(TOPIC, 0))[0].path
    assert frames(path) == [(BATCH, 0, 30), (BATCH, 30, 20)]


def test_commit_in_the_middle_of_a_batch_resumes_exactly_after_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    bus = make_bus(tmp_path)
    sent = [record(i) for i in range(20)]

    async def main() -> None:
        producer = bus.producer()
        await producer.send_many(sent[:10])
        await producer.send_many(sent[10:])
        await producer.stop()

        same(await consume(bus, count=3, commit=3), sent[:3])
        # Polled to the end, committed inside the second frame (as a writer whose flush ended there).
        same(await consume(bus, commit=15), sent[3:], first_offset=3)
        doc = json.loads((tmp_path / "groups" / "g" / f"{TOPIC}.0.offset").read_text())
        second_frame = len(encode_batch(0, 0, sent[:10]))
        assert doc == {"offset": 15, "position": second_frame}  # the start of the frame holding 15
        same(await consume(bus), sent[15:], first_offset=15)
        # Nothing committed after 15: the same records again (at-least-once), none more, none fewer.
        same(await consume(bus, commit=20), sent[15:], first_offset=15)
        assert await consume(bus) == []

    with caplog.at_level(logging.WARNING, logger="forgeline.bus.embedded"):
        asyncio.run(main())
    assert "rescanning" not in caplog.text  # every commit position held its offset


def test_a_commit_position_that_is_stale_inside_a_batch_is_rescanned(tmp_path: Path) -> None:
    bus = make_bus(tmp_path)
    sent = [record(i) for i in range(12)]

    async def main() -> None:
        producer = bus.producer()
        await producer.send_many(sent[:6])
        await producer.send_many(sent[6:])
        await producer.stop()
        offsets = tmp_path / "groups" / "g" / f"{TOPIC}.0.offset"
        offsets.parent.mkdir(parents=True)
        for position in (0, 7, 10_000):  # the wrong frame, inside a frame, past the end
            offsets.write_text(json.dumps({"offset": 8, "position": position}))
            same(await consume(bus), sent[8:], first_offset=8)

    asyncio.run(main())


def test_previous_release_segments_are_read_appended_to_and_committed_in_place(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    bus = make_bus(tmp_path)
    old = [record(i) for i in range(10)]
    positions = write_previous_release(bus, TOPIC, [old[:4], old[4:]])
    directory = bus.partition_dir(TOPIC, 0)
    # The group had committed offset 6 under the previous release: position of record 6's frame.
    group = tmp_path / "groups" / "g"
    group.mkdir(parents=True)
    (group / f"{TOPIC}.0.offset").write_text(json.dumps({"offset": 6, "position": positions[6]}))
    new = [record(i) for i in range(10, 25)]

    async def main() -> None:
        everything = await read_all(bus, max_records=3)
        same(everything, old)
        assert {r.timestamp_ms for r in everything} == {OLD_MS}
        same(await consume(bus, count=2, commit=8), old[6:8], first_offset=6)

        # The new release appends batch frames to the previous release's active segment.
        producer = bus.producer()
        await producer.send_many(new[:10])
        await producer.stop()
        active = segments(directory)[-1]
        assert frames(active.path, active.start) == [(SINGLE, o, 1) for o in range(4, 10)] + [(BATCH, 10, 10)]

        same(await consume(bus, commit=13), old[8:] + new[:10], first_offset=8)  # 13: inside the batch
        # Another process's producer carries on from the end of the mixed segment.
        producer = make_bus(tmp_path).producer()
        await producer.send_many(new[10:])
        await producer.stop()
        same(await consume(bus, commit=25), new[3:], first_offset=13)
        same(await read_all(bus), old + new)

    with caplog.at_level(logging.WARNING, logger="forgeline.bus.embedded"):
        asyncio.run(main())
    assert "rescanning" not in caplog.text


def test_a_torn_batch_after_previous_release_frames_is_dropped_whole(tmp_path: Path) -> None:
    bus = make_bus(tmp_path)
    old = [record(i) for i in range(5)]
    write_previous_release(bus, TOPIC, [old])
    path = segments(bus.partition_dir(TOPIC, 0))[0].path
    good = path.stat().st_size
    torn = encode_batch(5, 0, [record(i) for i in range(5, 40)])
    with path.open("ab") as handle:
        handle.write(torn[: len(torn) - 3])  # killed before the last bytes of the frame landed

    async def main() -> None:
        same(await read_all(bus), old)  # none of the torn frame's records, not even the whole ones
        producer = bus.producer()
        await producer.send(OutgoingRecord(TOPIC, b"after"))
        await producer.stop()
        got = await read_all(bus)
        same(got[:5], old)
        assert [(r.offset, r.value) for r in got[5:]] == [(5, b"after")]

    asyncio.run(main())
    assert frames(path)[-1] == (BATCH, 5, 1)
    assert path.stat().st_size == good + len(encode_batch(5, 0, [OutgoingRecord(TOPIC, b"after")]))


def test_compaction_keeps_the_last_record_per_key_across_previous_and_batch_frames(tmp_path: Path) -> None:
    # segment.bytes=1: every append closes the segment before it, so everything but the last
    # append is in closed segments, which compaction rewrites.
    bus = make_bus(tmp_path, segment_bytes=1)

    def rec(key: bytes | None, value: bytes) -> OutgoingRecord:
        return OutgoingRecord(COMPACTED, value, key=key, headers=(("h", value),))

    old = [rec(b"a", b"a0"), rec(b"b", b"b0"), rec(b"a", b"a1"), rec(None, b"n0"), rec(b"c", b"c0"), rec(b"b", b"b1")]
    write_previous_release(bus, COMPACTED, [old[:4], old[4:]])
    batches = [
        [rec(b"a", b"a2"), rec(b"d", b"d0"), rec(None, b"n1"), rec(b"c", b"c1"), rec(b"d", b"d1"), rec(b"e", b"e0")],
        [rec(b"e", b"e1"), rec(b"f", b"f0")],
        [rec(None, b"end")],
    ]
    sent = old + [r for batch in batches for r in batch]
    latest = {r.key: offset for offset, r in enumerate(sent)}
    expected = [(o, r.value) for o, r in enumerate(sent) if r.key is None or latest[r.key] == o]

    async def main() -> None:
        producer = bus.producer()
        for batch in batches:
            await producer.send_many(batch)
        await producer.stop()
        bus.enforce_retention(COMPACTED, 0)
        got = await read_all(bus, topic=COMPACTED, max_records=2)
        assert [(r.offset, r.value) for r in got] == expected
        assert all(r.headers == (("h", r.value),) for r in got)
        # A group commits inside a frame compaction rewrote (8..10, after 9) and resumes there.
        consumer = bus.consumer("g", [COMPACTED])
        await consumer.start()
        first = await consumer.poll(5, timeout_s=0)
        await consumer.commit({TopicPartition(COMPACTED, 0): first[-1].offset + 1})
        await consumer.stop()
        consumer = bus.consumer("g", [COMPACTED])
        await consumer.start()
        rest = await drain(consumer)
        await consumer.stop()
        assert [(r.offset, r.value) for r in first + rest] == expected

    asyncio.run(main())
    # Old frames stay as they were; the batch whose records were partly superseded (6..11) was
    # split where its gaps are; the others are whole.
    directory = bus.partition_dir(COMPACTED, 0)
    kept = [f for s in segments(directory) for f in frames(s.path, s.start)]
    assert kept == [(SINGLE, 3, 1), (SINGLE, 5, 1), (BATCH, 6, 1), (BATCH, 8, 3), (BATCH, 12, 2), (BATCH, 14, 1)]
