"""Properties of the embedded log's frames, for random records, batch sizes and cut points.

Any mix of previous-format (single-record) and batch frames reads back as exactly the records
written, at consecutive offsets; a file cut anywhere (a crash mid-write) reads back as exactly
the whole frames before the cut; a group that commits at any offset, in or between frames,
resumes with exactly the records after it.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from forgeline.bus.embedded import EmbeddedBus
from forgeline.bus.embedded.framing import Scanner, encode_batch
from forgeline.bus.port import OutgoingRecord, Record, TopicPartition
from tests.unit.bus.previous_format import encode_record_v1

pytestmark = pytest.mark.unit

TOPIC = "raw.test"
PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

headers = st.lists(st.tuples(st.text(max_size=8), st.binary(max_size=8)), max_size=3).map(tuple)
records = st.builds(
    OutgoingRecord,
    topic=st.just(TOPIC),
    value=st.binary(max_size=64),
    key=st.none() | st.binary(max_size=16),
    headers=headers,
)
# Each frame: its records and whether the previous release wrote them (one frame per record).
frames = st.lists(st.tuples(st.lists(records, min_size=1, max_size=12), st.booleans()), min_size=1, max_size=8)


def encode(layout: list[tuple[list[OutgoingRecord], bool]]) -> tuple[bytes, list[int]]:
    """The file bytes, and the end of each frame in it."""
    data, ends, offset = b"", [], 0
    for batch, previous in layout:
        chunks = [encode_record_v1(offset + i, 7, r) for i, r in enumerate(batch)] if previous else []
        for chunk in chunks or [encode_batch(offset, 7, batch)]:
            data += chunk
            ends.append(len(data))
        offset += len(batch)
    return data, ends


def scan(path: Path) -> tuple[list[Record], str | None]:
    fd = os.open(path, os.O_RDONLY)
    try:
        scanner = Scanner(fd, 0, chunk=64)  # a small chunk: frames straddle reads
        out: list[Record] = []
        while (frame := scanner.next()) is not None:
            out += frame.records(TOPIC, 0)
        return out, scanner.stopped
    finally:
        os.close(fd)


def as_sent(got: list[Record]) -> list[tuple[int, bytes | None, bytes, tuple[tuple[str, bytes], ...]]]:
    return [(r.offset, r.key, r.value, r.headers) for r in got]


def expected(
    sent: list[OutgoingRecord], first: int = 0
) -> list[tuple[int, bytes | None, bytes, tuple[tuple[str, bytes], ...]]]:
    return [(first + i, r.key, r.value, r.headers) for i, r in enumerate(sent)]


@PROPERTY
@given(layout=frames, cut=st.floats(0, 1))
def test_mixed_frames_read_back_exactly_and_a_cut_keeps_only_whole_frames(
    tmp_path: Path, layout: list[tuple[list[OutgoingRecord], bool]], cut: float
) -> None:
    sent = [r for batch, _ in layout for r in batch]
    data, ends = encode(layout)
    path = tmp_path / "segment.log"
    path.write_bytes(data)
    got, stopped = scan(path)
    assert stopped == "end"
    assert as_sent(got) == expected(sent)

    at = int(len(data) * cut)
    path.write_bytes(data[:at])
    got, stopped = scan(path)
    whole = [end for end in ends if end <= at]
    assert stopped == ("end" if at in (0, *whole) else "short")
    assert len(got) == len(encode_records_before(layout, len(whole)))
    assert as_sent(got) == expected(sent)[: len(got)]


def encode_records_before(layout: list[tuple[list[OutgoingRecord], bool]], frame_count: int) -> list[OutgoingRecord]:
    """The records of the first ``frame_count`` frames of ``layout``."""
    out: list[OutgoingRecord] = []
    for batch, previous in layout:
        for group in [[r] for r in batch] if previous else [batch]:
            if frame_count == 0:
                return out
            out += group
            frame_count -= 1
    return out


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=st.lists(st.integers(1, 30), min_size=1, max_size=6), data=st.data())
def test_a_commit_at_any_offset_resumes_with_exactly_the_records_after_it(
    tmp_path_factory: pytest.TempPathFactory, batches: list[int], data: st.DataObject
) -> None:
    root = tmp_path_factory.mktemp("bus")
    total = sum(batches)
    polled = data.draw(st.integers(1, total), label="polled")
    commit = data.draw(st.integers(0, polled), label="commit")
    max_records = data.draw(st.integers(1, 40), label="max_records")
    tp = TopicPartition(TOPIC, 0)

    async def main() -> list[Record]:
        bus = EmbeddedBus(root, default_partitions=1, fsync=False)
        producer = bus.producer()
        sent = 0
        for size in batches:
            await producer.send_many([OutgoingRecord(TOPIC, b"%d" % (sent + i)) for i in range(size)])
            sent += size
        await producer.stop()
        consumer = bus.consumer("g", [TOPIC])
        await consumer.start()
        got: list[Record] = []
        while len(got) < polled:
            got += await consumer.poll(min(max_records, polled - len(got)), timeout_s=0)
        await consumer.commit({tp: commit})
        await consumer.stop()
        again = bus.consumer("g", [TOPIC])
        await again.start()
        rest: list[Record] = []
        while batch := await again.poll(max_records, timeout_s=0):
            rest += batch
        await again.stop()
        return rest

    rest = asyncio.run(main())
    assert [(r.offset, r.value) for r in rest] == [(o, b"%d" % o) for o in range(commit, total)]
