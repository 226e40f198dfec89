"""The embedded bus: durability, offsets, groups, torn tails and multi-process appends."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import pytest

from forgeline.bus.embedded import EmbeddedBus, EmbeddedConsumer
from forgeline.bus.embedded.framing import encode_batch
from forgeline.bus.port import Bus, BusUnavailable, OutgoingRecord, Record, TopicPartition, partition_for
from tests.unit.bus.previous_format import encode_record_v1

pytestmark = pytest.mark.unit

TOPIC = "raw.test"


def log_path(root: Path, topic: str, partition: int) -> Path:
    return root / "topics" / topic / str(partition) / "00000000000000000000.log"


async def drain(consumer: EmbeddedConsumer, max_records: int = 1000) -> list[Record]:
    """Everything available right now."""
    out: list[Record] = []
    while batch := await consumer.poll(max_records, timeout_s=0):
        out += batch
    return out


async def send_values(bus: EmbeddedBus, values: list[bytes], **kwargs: object) -> None:
    producer = bus.producer()
    await producer.start()
    for value in values:
        await producer.send(OutgoingRecord(TOPIC, value, **kwargs))  # type: ignore[arg-type]
    await producer.stop()


def by_partition(records: list[Record]) -> dict[int, list[Record]]:
    out: dict[int, list[Record]] = defaultdict(list)
    for record in records:
        out[record.partition].append(record)
    return out


def test_satisfies_the_port(tmp_path: Path) -> None:
    bus: Bus = EmbeddedBus(tmp_path)
    assert bus.capabilities.name == "embedded"
    assert bus.capabilities.shared_groups is False


def test_keyed_partitioning_is_stable(tmp_path: Path) -> None:
    keys = [f"key-{i}".encode() for i in range(40)]

    async def main() -> list[Record]:
        bus = EmbeddedBus(tmp_path, default_partitions=4)
        producer = bus.producer()
        await producer.start()
        for round_ in range(3):
            await producer.send_many([OutgoingRecord(TOPIC, b"%d" % round_, key=k) for k in keys])
        await producer.stop()
        consumer = bus.consumer("g", [TOPIC])
        await consumer.start()
        records = await drain(consumer)
        await consumer.stop()
        return records

    records = asyncio.run(main())
    assert len(records) == 120
    seen: dict[bytes, set[int]] = defaultdict(set)
    for record in records:
        assert record.key is not None
        seen[record.key].add(record.partition)
    assert all(seen[k] == {partition_for(k, 4)} for k in keys)
    assert len({p for parts in seen.values() for p in parts}) > 1  # keys do spread


def test_send_then_poll_returns_consecutive_offsets_per_partition(tmp_path: Path) -> None:
    async def main() -> list[Record]:
        bus = EmbeddedBus(tmp_path, default_partitions=3)
        producer = bus.producer()
        await producer.start()
        await producer.send_many(
            [OutgoingRecord(TOPIC, b"v%d" % i, headers=(("h", b"%d" % i), ("é", b""))) for i in range(30)]
        )
        await producer.send(OutgoingRecord(TOPIC, b"pinned", key=b"k", partition=2))
        await producer.stop()
        consumer = bus.consumer("g", [TOPIC])
        await consumer.start()
        assert consumer.assignment() == {TopicPartition(TOPIC, p) for p in range(3)}
        records = await drain(consumer, max_records=7)
        ends = await consumer.end_offsets()
        assert {tp.partition: end for tp, end in ends.items()} == {0: 10, 1: 10, 2: 11}
        await consumer.stop()
        return records

    records = asyncio.run(main())
    assert len(records) == 31
    parts = by_partition(records)
    for partition, recs in parts.items():
        assert [r.offset for r in recs] == list(range(len(recs))), partition
    # No key: round robin, so each partition got a third, in send order.
    assert [r.value for r in parts[0]] == [b"v%d" % i for i in range(0, 30, 3)]
    assert parts[2][-1].value == b"pinned" and parts[2][-1].key == b"k"
    first = parts[0][0]
    assert first.key is None and first.headers == (("h", b"0"), ("é", b""))
    assert abs(first.timestamp_ms - time.time() * 1000) < 60_000


def test_poll_is_fair_across_partitions(tmp_path: Path) -> None:
    async def main() -> list[Record]:
        bus = EmbeddedBus(tmp_path, default_partitions=2)
        producer = bus.producer()
        await producer.send_many([OutgoingRecord(TOPIC, b"x", partition=i % 2) for i in range(40)])
        await producer.stop()
        reader = bus.reader([TOPIC])
        await reader.start()
        batch = await reader.poll(10, timeout_s=0)
        await reader.stop()
        return batch

    batch = asyncio.run(main())
    assert sorted(r.partition for r in batch) == [0] * 5 + [1] * 5


def test_commit_then_a_new_consumer_resumes_after_it(tmp_path: Path) -> None:
    async def main() -> None:
        bus = EmbeddedBus(tmp_path, default_partitions=1)
        await send_values(bus, [b"%d" % i for i in range(10)])
        tp = TopicPartition(TOPIC, 0)

        first = bus.consumer("g", [TOPIC])
        await first.start()
        got = await first.poll(4, timeout_s=0)
        assert [r.offset for r in got] == [0, 1, 2, 3]
        await first.commit({tp: 4})
        assert await first.committed(tp) == 4
        await first.stop()

        doc = json.loads((tmp_path / "groups" / "g" / f"{TOPIC}.0.offset").read_text())
        assert doc["offset"] == 4 and doc["position"] > 0

        second = bus.consumer("g", [TOPIC])
        await second.start()
        assert await second.committed(tp) == 4
        rest = await drain(second)
        assert [r.offset for r in rest] == list(range(4, 10))
        await second.commit({tp: 10})
        await second.stop()

        # Caught up at the end, then more records arrive: resume exactly there.
        await send_values(bus, [b"10", b"11"])
        third = EmbeddedBus(tmp_path).consumer("g", [TOPIC])
        await third.start()
        assert [r.value for r in await drain(third)] == [b"10", b"11"]
        await third.stop()

    asyncio.run(main())


def test_uncommitted_records_are_redelivered_after_restart(tmp_path: Path) -> None:
    async def main() -> None:
        bus = EmbeddedBus(tmp_path, default_partitions=1)
        await send_values(bus, [b"%d" % i for i in range(6)])
        tp = TopicPartition(TOPIC, 0)
        consumer = bus.consumer("g", [TOPIC])
        await consumer.start()
        assert len(await consumer.poll(2, timeout_s=0)) == 2
        await consumer.commit({tp: 2})
        # Read further than committed: the position moves, the commit does not.
        assert [r.offset for r in await consumer.poll(3, timeout_s=0)] == [2, 3, 4]
        assert await consumer.committed(tp) == 2
        await consumer.stop()  # "crash" before committing 2..4

        again = bus.consumer("g", [TOPIC])
        await again.start()
        assert [r.offset for r in await drain(again)] == [2, 3, 4, 5]
        await again.stop()

    asyncio.run(main())


def test_stale_commit_position_is_rescanned(tmp_path: Path) -> None:
    async def main() -> None:
        bus = EmbeddedBus(tmp_path, default_partitions=1)
        await send_values(bus, [b"%d" % i for i in range(5)])
        offsets = tmp_path / "groups" / "g" / f"{TOPIC}.0.offset"
        offsets.parent.mkdir(parents=True)
        offsets.write_text(json.dumps({"offset": 3, "position": 1}))  # mid-record
        consumer = bus.consumer("g", [TOPIC])
        await consumer.start()
        assert [r.offset for r in await drain(consumer)] == [3, 4]
        await consumer.stop()

    asyncio.run(main())


def test_second_consumer_of_a_group_is_refused(tmp_path: Path) -> None:
    async def main() -> None:
        bus = EmbeddedBus(tmp_path)
        first = bus.consumer("processors", [TOPIC])
        await first.start()
        with pytest.raises(RuntimeError, match="'processors'"):
            await EmbeddedBus(tmp_path).consumer("processors", [TOPIC]).start()
        other_group = bus.consumer("other", [TOPIC])
        await other_group.start()
        await other_group.stop()
        await first.stop()
        # Released on stop.
        again = bus.consumer("processors", [TOPIC])
        await again.start()
        await again.stop()

    asyncio.run(main())


def _partial_record() -> bytes:
    whole = encode_batch(3, 0, [OutgoingRecord(TOPIC, b"never acknowledged" * 10)] * 5)
    return whole[: len(whole) // 2]


def _partial_previous_format_record() -> bytes:
    whole = encode_record_v1(3, 0, OutgoingRecord(TOPIC, b"never acknowledged" * 10))
    return whole[: len(whole) // 2]


def _bad_crc_record() -> bytes:
    whole = bytearray(encode_batch(3, 0, [OutgoingRecord(TOPIC, b"flipped"), OutgoingRecord(TOPIC, b"too")]))
    whole[-1] ^= 0xFF
    return bytes(whole)


@pytest.mark.parametrize(
    "tail",
    [_partial_record(), _partial_previous_format_record(), b"\x00" * 4096, b"\x01garbage", b"\x02", _bad_crc_record()],
    ids=["partial-batch", "partial-previous-format", "zeros", "garbage", "batch-magic-only", "bad-crc"],
)
def test_torn_tail_is_invisible_and_truncated_by_the_next_append(tmp_path: Path, tail: bytes) -> None:
    async def main() -> None:
        bus = EmbeddedBus(tmp_path, default_partitions=1)
        producer = bus.producer()
        await producer.send_many([OutgoingRecord(TOPIC, b"%d" % i) for i in range(3)])
        path = log_path(tmp_path, TOPIC, 0)
        good_size = path.stat().st_size
        with path.open("ab") as f:
            f.write(tail)

        consumer = bus.consumer("g", [TOPIC])
        await consumer.start()
        assert [r.value for r in await drain(consumer)] == [b"0", b"1", b"2"]
        assert await consumer.poll(10, timeout_s=0.05) == []  # the tail is "not yet", not an error
        assert (await consumer.end_offsets())[TopicPartition(TOPIC, 0)] == 3

        # The same producer notices the file changed, truncates the tail and continues at 3.
        await producer.send_many([OutgoingRecord(TOPIC, b"3"), OutgoingRecord(TOPIC, b"4")])
        records = await drain(consumer)
        assert [(r.offset, r.value) for r in records] == [(3, b"3"), (4, b"4")]
        # Both records went into one batch frame, right where the good records ended.
        assert path.stat().st_size == good_size + len(
            encode_batch(3, 0, [OutgoingRecord(TOPIC, b"3"), OutgoingRecord(TOPIC, b"4")])
        )
        await producer.stop()
        await consumer.stop()

        # A fresh producer (as in another process) continues too.
        await send_values(EmbeddedBus(tmp_path), [b"5"])
        reader = bus.reader([TOPIC])
        await reader.start()
        assert [r.offset for r in await drain(reader)] == [0, 1, 2, 3, 4, 5]
        await reader.stop()

    asyncio.run(main())


@pytest.mark.parametrize("damaged", ["magic", "value"])
def test_corrupt_record_followed_by_valid_ones_is_not_truncated(tmp_path: Path, damaged: str) -> None:
    async def main() -> None:
        bus = EmbeddedBus(tmp_path, default_partitions=1)
        await send_values(bus, [b"aaaa", b"bbbb", b"cccc"])
        path = log_path(tmp_path, TOPIC, 0)
        data = bytearray(path.read_bytes())
        record_size = len(data) // 3
        # Damage the middle record: its magic byte or its last value byte.
        data[record_size if damaged == "magic" else 2 * record_size - 1] ^= 0xFF
        path.write_bytes(bytes(data))
        producer = bus.producer(send_timeout_s=2)
        with pytest.raises(BusUnavailable) as info:
            await producer.send(OutgoingRecord(TOPIC, b"dddd"))
        assert isinstance(info.value.__cause__, OSError)
        await producer.stop()
        assert path.read_bytes() == bytes(data)
        reader = bus.reader([TOPIC])
        await reader.start()
        assert [r.value for r in await drain(reader)] == [b"aaaa"]  # stops at the damage
        await reader.stop()

    asyncio.run(main())


# A child that appends to partition 0 in concurrent batches once ``go`` exists.
_CONCURRENT_WRITER = textwrap.dedent(
    """
    import asyncio, os, sys, time
    from pathlib import Path
    from forgeline.bus.embedded import EmbeddedBus
    from forgeline.bus.port import OutgoingRecord

    root, name, count, partitions = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])

    async def main():
        bus = EmbeddedBus(root, default_partitions=partitions)
        while not (root / "go").exists():
            time.sleep(0.005)
        print(bus.partitions("raw.test"), flush=True)
        producer = bus.producer()
        async def task(t):
            for i in range(t, count, 4):
                await producer.send(OutgoingRecord("raw.test", f"{name}-{i}".encode(), partition=0))
        await asyncio.gather(*(task(t) for t in range(4)))
        await producer.stop()

    asyncio.run(main())
    """
)


def test_two_processes_append_to_one_partition(tmp_path: Path) -> None:
    count = 300
    children = [
        subprocess.Popen(
            [sys.executable, "-c", _CONCURRENT_WRITER, str(tmp_path), name, str(count), str(partitions)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for name, partitions in (("a", 2), ("b", 5))
    ]
    time.sleep(0.3)  # let both import, so they race on topic creation and appends
    (tmp_path / "go").touch()
    created = []
    for child in children:
        out, _ = child.communicate(timeout=30)
        assert child.returncode == 0
        created.append(int(out.strip()))
    assert created[0] == created[1]  # both processes agree on the partition count

    async def main() -> list[Record]:
        reader = EmbeddedBus(tmp_path).reader([TOPIC])
        await reader.start()
        records = await drain(reader)
        await reader.stop()
        return records

    records = asyncio.run(main())
    assert [r.offset for r in records] == list(range(2 * count))
    values = [r.value.decode() for r in records]
    assert sorted(values) == sorted(f"{n}-{i}" for n in "ab" for i in range(count))
    # Each task sends one record at a time, so its records keep their order.
    sequences: dict[tuple[str, int], list[int]] = defaultdict(list)
    for value in values:
        name, i = value.split("-")
        sequences[name, int(i) % 4].append(int(i))
    assert all(seq == sorted(seq) for seq in sequences.values())


def test_concurrent_sends_are_group_committed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bus = EmbeddedBus(tmp_path, default_partitions=4)
    bus.partitions(TOPIC)  # create the topic before counting
    calls = 0
    lock = threading.Lock()
    real_fsync: Callable[[int], None] = os.fsync

    def counting_fsync(fd: int) -> None:
        nonlocal calls
        with lock:
            calls += 1
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", counting_fsync)

    async def main() -> list[Record]:
        producer = bus.producer()
        await producer.start()
        await asyncio.gather(*(producer.send(OutgoingRecord(TOPIC, b"%d" % i, key=b"k%d" % i)) for i in range(200)))
        await producer.stop()
        reader = bus.reader([TOPIC])
        await reader.start()
        records = await drain(reader)
        await reader.stop()
        return records

    records = asyncio.run(main())
    assert len(records) == 200
    assert 1 <= calls <= 20, calls


def test_send_times_out_with_bus_unavailable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bus = EmbeddedBus(tmp_path, default_partitions=1)
    bus.partitions(TOPIC)
    monkeypatch.setattr(os, "fsync", lambda fd: time.sleep(0.5))

    async def main() -> None:
        producer = bus.producer(send_timeout_s=0.1)
        with pytest.raises(BusUnavailable):
            await producer.send(OutgoingRecord(TOPIC, b"slow"))
        await producer.stop()

    asyncio.run(main())


def test_write_failure_raises_bus_unavailable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bus = EmbeddedBus(tmp_path, default_partitions=1)
    bus.partitions(TOPIC)

    def failing_fsync(fd: int) -> None:
        raise OSError(28, "No space left on device")

    async def main() -> None:
        producer = bus.producer()
        monkeypatch.setattr(os, "fsync", failing_fsync)
        with pytest.raises(BusUnavailable) as info:
            await producer.send(OutgoingRecord(TOPIC, b"maybe"))
        assert isinstance(info.value.__cause__, OSError)
        monkeypatch.undo()
        await producer.send(OutgoingRecord(TOPIC, b"after"))  # the producer recovers
        await producer.stop()
        reader = bus.reader([TOPIC])
        await reader.start()
        # The failed record was written but its fsync failed: the append cut it off again, so
        # the log holds no record whose writer was told it failed (and none torn on ENOSPC).
        assert [(r.offset, r.value) for r in await drain(reader)] == [(0, b"after")]
        await reader.stop()

    asyncio.run(main())


def test_reader_starts_at_zero_and_never_commits(tmp_path: Path) -> None:
    async def main() -> None:
        bus = EmbeddedBus(tmp_path, default_partitions=1)
        await send_values(bus, [b"a", b"b", b"c"])
        tp = TopicPartition(TOPIC, 0)
        for _ in range(2):
            reader = bus.reader([TOPIC])
            await reader.start()
            assert [r.value for r in await drain(reader)] == [b"a", b"b", b"c"]
            await reader.commit({tp: 3})
            assert await reader.committed(tp) == 0
            await reader.stop()
        assert not (tmp_path / "groups").exists()
        # Readers need no ownership: two at once are fine, and they tail new records.
        one, two = bus.reader([TOPIC]), bus.reader([TOPIC])
        await one.start()
        await two.start()
        await drain(one)
        await send_values(bus, [b"d"])
        assert [r.value for r in await one.poll(10, timeout_s=1)] == [b"d"]
        assert len(await drain(two)) == 4
        await one.stop()
        await two.stop()

    asyncio.run(main())


def test_poll_with_timeout_returns_empty_promptly(tmp_path: Path) -> None:
    async def main() -> None:
        consumer = EmbeddedBus(tmp_path).consumer("g", ["not.yet.written"])
        await consumer.start()  # creates the topic so the consumer can start before producers
        started = time.monotonic()
        assert await consumer.poll(10, timeout_s=0) == []
        assert time.monotonic() - started < 0.05
        started = time.monotonic()
        assert await consumer.poll(10, timeout_s=0.1) == []
        assert 0.09 <= time.monotonic() - started < 0.5
        await consumer.stop()

    asyncio.run(main())
    assert (tmp_path / "topics" / "not.yet.written" / "meta.json").exists()


def test_poll_wakes_when_a_record_arrives(tmp_path: Path) -> None:
    async def main() -> None:
        bus = EmbeddedBus(tmp_path, default_partitions=1)
        consumer = bus.consumer("g", [TOPIC])
        await consumer.start()

        async def later() -> None:
            await asyncio.sleep(0.05)
            await send_values(bus, [b"late"])

        started = time.monotonic()
        sender = asyncio.create_task(later())
        records = await consumer.poll(10, timeout_s=5)
        await sender
        assert [r.value for r in records] == [b"late"]
        assert time.monotonic() - started < 1
        await consumer.stop()

    asyncio.run(main())


def test_partition_count_is_persisted_in_meta(tmp_path: Path) -> None:
    bus = EmbeddedBus(tmp_path, default_partitions=4, partitions={TOPIC: 3})
    assert bus.partitions(TOPIC) == 3
    assert bus.partitions("other") == 4
    meta = json.loads((tmp_path / "topics" / TOPIC / "meta.json").read_text())
    assert meta == {"partitions": 3}
    assert sorted(p.name for p in (tmp_path / "topics" / TOPIC).iterdir() if p.is_dir()) == ["0", "1", "2"]
    # Later opens read the meta, whatever they are told.
    assert EmbeddedBus(tmp_path, default_partitions=8, partitions={TOPIC: 5}).partitions(TOPIC) == 3


def test_rejects_names_that_escape_the_root(tmp_path: Path) -> None:
    bus = EmbeddedBus(tmp_path)
    with pytest.raises(ValueError):
        bus.partitions("../evil")
    with pytest.raises(ValueError):
        bus.consumer("a/b", [TOPIC])


# A child that appends from 8 concurrent tasks and prints each id once send returns.
_ACKING_WRITER = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from forgeline.bus.embedded import EmbeddedBus
    from forgeline.bus.port import OutgoingRecord

    async def main():
        producer = EmbeddedBus(Path(sys.argv[1]), default_partitions=2).producer()
        async def task(t):
            i = t
            while True:
                await producer.send(OutgoingRecord("raw.test", b"%d" % i + b"." * (i % 5000)))
                print(i, flush=True)
                i += 8
        await asyncio.gather(*(task(t) for t in range(8)))

    asyncio.run(main())
    """
)


def test_kill_9_loses_no_acknowledged_record(tmp_path: Path) -> None:
    with subprocess.Popen(
        [sys.executable, "-c", _ACKING_WRITER, str(tmp_path)], stdout=subprocess.PIPE, text=True
    ) as child:
        assert child.stdout is not None
        acknowledged: set[int] = set()
        deadline = time.monotonic() + 20
        while len(acknowledged) < 200 and time.monotonic() < deadline:
            line = child.stdout.readline()
            if not line:
                break
            acknowledged.add(int(line))
        os.kill(child.pid, signal.SIGKILL)
        # Lines printed before the kill were acknowledged too.
        acknowledged.update(int(line) for line in child.stdout.read().split())
        child.wait()
    assert len(acknowledged) >= 200

    async def main() -> None:
        bus = EmbeddedBus(tmp_path)
        consumer = bus.consumer("g", [TOPIC])
        await consumer.start()
        records = await drain(consumer)
        ids = {int(r.value.split(b".")[0]) for r in records}
        assert acknowledged <= ids
        for partition, recs in by_partition(records).items():
            assert [r.offset for r in recs] == list(range(len(recs))), partition
        ends = await consumer.end_offsets()

        producer = bus.producer()
        await producer.send_many([OutgoingRecord(TOPIC, b"after", partition=p) for p in range(2)])
        await producer.stop()
        after = await drain(consumer)
        assert sorted((r.partition, r.offset) for r in after) == [(p, ends[TopicPartition(TOPIC, p)]) for p in range(2)]
        await consumer.stop()

    asyncio.run(main())
