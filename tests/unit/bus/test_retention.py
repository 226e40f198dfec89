"""Embedded log retention: segment rolling, deletion by age and size, compaction, consumer needs."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from forgeline.bus.embedded import EmbeddedBus, EmbeddedConsumer
from forgeline.bus.factory import create_bus, retention_policy
from forgeline.bus.follow import read_to_end
from forgeline.bus.port import OutgoingRecord, Record, TopicPartition
from forgeline.bus.retention import RetentionPolicy, TopicRetention
from forgeline.bus.topics import CONTROL_EXPORTER, CONTROL_TENANCY, RAW_FORGE
from forgeline.config import Settings
from forgeline.tenancy.store import TenancyAdmin, TenancyFollower

pytestmark = pytest.mark.unit

TOPIC = "raw.test"
TP = TopicPartition(TOPIC, 0)
VALUE = b"x" * 200  # ~240 bytes a record with its framing


def bus_with(tmp_path: Path, **settings: object) -> EmbeddedBus:
    policy = RetentionPolicy(default=TopicRetention(**settings), compacted=frozenset({"control.test"}))  # type: ignore[arg-type]
    return EmbeddedBus(tmp_path, default_partitions=1, fsync=False, retention=policy)


def segment_files(bus: EmbeddedBus, topic: str = TOPIC) -> list[Path]:
    return sorted(p for p in bus.partition_dir(topic, 0).iterdir() if p.suffix == ".log")


def disk_bytes(bus: EmbeddedBus, topic: str = TOPIC) -> int:
    return sum(p.stat().st_size for p in segment_files(bus, topic))


async def send(bus: EmbeddedBus, count: int, topic: str = TOPIC, key: bytes | None = None, start: int = 0) -> None:
    producer = bus.producer()
    await producer.start()
    for i in range(start, start + count):
        await producer.send(OutgoingRecord(topic, VALUE + str(i).encode(), key=key))
    await producer.stop()


async def drain(consumer: EmbeddedConsumer) -> list[Record]:
    out: list[Record] = []
    while batch := await consumer.poll(1000, timeout_s=0):
        out += batch
    return out


def unread_deleted(topic: str, group: str) -> float:
    value = REGISTRY.get_sample_value(
        "forgeline_bus_retention_unread_deleted_records_total", {"topic": topic, "group": group}
    )
    return value or 0.0


def test_segments_roll_and_a_reader_reads_across_them(tmp_path: Path) -> None:
    bus = bus_with(tmp_path, segment_bytes=2000, retention_ms=None)

    async def main() -> None:
        await send(bus, 50)
        assert len(segment_files(bus)) >= 5
        # Only the active segment is writable: the others are closed.
        *closed, active = segment_files(bus)
        assert all(os.stat(p).st_mode & 0o777 == 0o400 for p in closed)
        assert os.stat(active).st_mode & 0o777 == 0o600
        reader = bus.reader([TOPIC])
        await reader.start()
        records = await drain(reader)
        assert [r.offset for r in records] == list(range(50))
        assert [r.value for r in records] == [VALUE + str(i).encode() for i in range(50)]
        assert await reader.end_offsets() == {TP: 50}
        await reader.stop()

    asyncio.run(main())


def test_a_group_resumes_from_a_commit_in_an_older_segment(tmp_path: Path) -> None:
    bus = bus_with(tmp_path, segment_bytes=2000, retention_ms=None)

    async def main() -> None:
        await send(bus, 20)
        consumer = bus.consumer("g", [TOPIC])
        await consumer.start()
        first = await consumer.poll(7, timeout_s=0)
        await consumer.commit({TP: first[-1].offset + 1})
        await consumer.stop()
        await send(bus, 20, start=20)  # more segments after the commit
        consumer = bus.consumer("g", [TOPIC])
        await consumer.start()
        rest = await drain(consumer)
        assert [r.offset for r in rest] == list(range(7, 40))
        await consumer.stop()

    asyncio.run(main())


def test_age_deletes_closed_segments_but_never_the_active_one(tmp_path: Path) -> None:
    bus = bus_with(tmp_path, segment_bytes=2000, retention_ms=1000)

    async def main() -> None:
        await send(bus, 30)
        before = segment_files(bus)
        old = time.time() - 10
        for path in before:
            os.utime(path, (old, old))
        assert bus.enforce_retention(TOPIC, 0) == len(before) - 1
        assert segment_files(bus) == before[-1:]
        # A new reader starts at the log start, the first record that is left.
        reader = bus.reader([TOPIC])
        await reader.start()
        records = await drain(reader)
        assert records and records[-1].offset == 29 and records[0].offset > 0
        await reader.stop()
        await send(bus, 1)  # appends still go on after the deletion
        reader = bus.reader([TOPIC])
        await reader.start()
        assert (await drain(reader))[-1].offset == 30
        await reader.stop()

    asyncio.run(main())


def test_age_keeps_what_a_group_has_not_committed(tmp_path: Path) -> None:
    bus = bus_with(tmp_path, segment_bytes=2000, retention_ms=1000)

    async def main() -> None:
        await send(bus, 30)
        consumer = bus.consumer("slow", [TOPIC])
        await consumer.start()
        got = await consumer.poll(12, timeout_s=0)
        await consumer.commit({TP: got[-1].offset + 1})  # committed 12
        old = time.time() - 10
        for path in segment_files(bus):
            os.utime(path, (old, old))
        bus.enforce_retention(TOPIC, 0)
        # Whatever is left starts at or before the committed offset: nothing it needs is gone.
        rest = await drain(consumer)
        assert [r.offset for r in rest] == list(range(12, 30))
        await consumer.stop()
        reader = bus.reader([TOPIC])
        await reader.start()
        assert (await drain(reader))[0].offset <= 12
        await reader.stop()
        assert unread_deleted(TOPIC, "slow") == 0

    asyncio.run(main())


def test_size_bound_wins_over_a_lagging_group_and_counts_what_it_skipped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    bus = bus_with(tmp_path, segment_bytes=2000, retention_ms=None, retention_bytes=5000)

    async def main() -> None:
        consumer = bus.consumer("laggard", [TOPIC])
        await consumer.start()
        await send(bus, 1)
        await consumer.commit({TP: len(await drain(consumer))})  # committed 1, then stops reading
        await consumer.stop()
        with caplog.at_level(logging.WARNING, logger="forgeline.bus.embedded"):
            await send(bus, 99, start=1)
        # The partition stays within retention.bytes plus the active segment.
        assert disk_bytes(bus) <= 5000 + 2000 + 300
        skipped = unread_deleted(TOPIC, "laggard")
        assert skipped > 0
        assert any("retention.bytes forces out" in r.getMessage() for r in caplog.records)
        # The group resumes at the log start (auto.offset.reset=earliest), having lost exactly
        # the counted records, and everything after them arrives.
        consumer = bus.consumer("laggard", [TOPIC])
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="forgeline.bus.embedded"):
            await consumer.start()
        rest = await drain(consumer)
        assert rest[0].offset == 1 + skipped
        assert [r.offset for r in rest] == list(range(rest[0].offset, 100))
        assert any("below the log start" in r.getMessage() for r in caplog.records)
        await consumer.stop()

    asyncio.run(main())


def test_a_running_consumer_skips_to_the_log_start_when_its_segments_are_deleted(tmp_path: Path) -> None:
    bus = bus_with(tmp_path, segment_bytes=2000, retention_ms=None, retention_bytes=3000)

    async def main() -> None:
        consumer = bus.consumer("g", [TOPIC])
        await consumer.start()
        await send(bus, 3)
        assert [r.offset for r in await consumer.poll(1, timeout_s=0)] == [0]
        await send(bus, 60, start=3)
        rest = await drain(consumer)
        offsets = [r.offset for r in rest]
        # In order, no duplicates, ending at the end; a gap only where retention removed records.
        assert offsets == sorted(set(offsets)) and offsets[-1] == 62
        await consumer.stop()

    asyncio.run(main())


def test_compaction_keeps_the_last_value_per_key_for_readers_from_zero(tmp_path: Path) -> None:
    bus = bus_with(tmp_path, segment_bytes=1500, retention_ms=1)
    topic = "control.test"

    async def main() -> None:
        producer = bus.producer()
        await producer.start()
        for round_ in range(20):
            for key in (b"a", b"b", b"c"):
                await producer.send(OutgoingRecord(topic, VALUE + f"{key.decode()}{round_}".encode(), key=key))
        await producer.send(OutgoingRecord(topic, b"keyless"))  # never compacted away
        await producer.stop()
        # A rewrite that a crash cut short leaves a temporary file: the next run removes it.
        stale = bus.partition_dir(topic, 0) / "00000000000000000000.log.compact.999"
        stale.write_bytes(b"partial")
        bus.enforce_retention(topic, 0)  # producers also compact whenever a segment closes
        assert not stale.exists()
        written = 61 * 240
        assert disk_bytes(bus, topic) < written / 3
        reader = bus.reader([topic])
        await reader.start()
        last: dict[bytes | None, bytes] = {}
        records: list[Record] = []
        await read_to_end(reader, lambda r: bool(records.append(r)) or True, timeout_s=5)
        for record in records:
            last[record.key] = record.value
        assert last == {b"a": VALUE + b"a19", b"b": VALUE + b"b19", b"c": VALUE + b"c19", None: b"keyless"}
        offsets = [r.offset for r in records]
        assert offsets == sorted(offsets) and offsets[-1] == 60
        await reader.stop()

    asyncio.run(main())


def test_tenancy_survives_compaction_including_revocations(tmp_path: Path) -> None:
    """The gateway reads control.tenancy from offset 0: compaction must leave every entity's
    last state, a revoked token included."""
    settings = Settings(
        data_dir=tmp_path, bus_segment_bytes=1024, bus_retention_ms=1, bus_retention_bytes=2048, min_free_bytes=0
    )
    bus = create_bus(f"embedded://{tmp_path / 'bus'}", 1, settings)
    assert isinstance(bus, EmbeddedBus)
    assert bus.retention.for_topic(CONTROL_TENANCY).compact

    async def main() -> None:
        async with TenancyAdmin(bus) as admin:
            org = await admin.create_organisation("studio")
            project = await admin.create_project(org.id, "game")
            kept, kept_secret = await admin.create_token("logister", project.id, "production")
            revoked, revoked_secret = await admin.create_token("logister", project.id, "production")
            for i in range(30):
                await admin.create_environment(project.id, f"env{i}")
            await admin.revoke_token(revoked.id)
            for i in range(30, 40):  # the revocation is in a closed segment by now
                await admin.create_environment(project.id, f"env{i}")
        assert len(segment_files(bus, CONTROL_TENANCY)) > 3  # rolled many times
        before = TenancyFollower(bus)
        await before.start()
        bus.enforce_retention(CONTROL_TENANCY, 0)
        after = TenancyFollower(bus)
        await after.start()
        assert after.table.projects == before.table.projects
        assert after.table.environments == before.table.environments
        assert len(after.table.environments) == 40
        assert after.table.authenticate(kept_secret, ("logister",)) is not None
        assert after.table.authenticate(revoked_secret, ("logister",)) is None  # still revoked
        assert after.table.tokens[revoked.id].revoked
        # The token's first record (not revoked) was compacted away; its revocation was kept.
        reader = bus.reader([CONTROL_TENANCY])
        await reader.start()
        keys = [r.key for r in await drain(reader)]
        await reader.stop()
        assert keys.count(f"token:{revoked.id}".encode()) == 1
        await before.stop()
        await after.stop()

    asyncio.run(main())


def test_settings_map_to_kafka_names_and_overrides(tmp_path: Path) -> None:
    policy = retention_policy(Settings(bus_retention_ms=5000, bus_retention_bytes=-1, bus_segment_ms=-1))
    raw = policy.for_topic(RAW_FORGE)
    assert (raw.retention_ms, raw.retention_bytes, raw.segment_ms, raw.compact) == (5000, None, None, False)
    assert policy.for_topic(CONTROL_TENANCY).compact
    assert policy.for_topic(CONTROL_EXPORTER).retention_ms == 24 * 3600 * 1000
    with pytest.raises(ValueError, match="retention.bogus"):
        RetentionPolicy(overrides={"t": {"retention.bogus": 1}}).for_topic("t")


def test_steady_feed_with_consumers_keeping_up_holds_a_flat_footprint(tmp_path: Path) -> None:
    """A make-run-like log fed steadily for many retention periods: disk stays flat."""
    bus = bus_with(tmp_path, segment_bytes=4000, segment_ms=50, retention_ms=100)
    policy_check = RetentionPolicy(
        default=TopicRetention(segment_bytes=4000, segment_ms=50, retention_ms=100), check_interval_s=0.05
    )
    bus.retention = policy_check

    async def main() -> None:
        producer = bus.producer()
        await producer.start()
        consumer = bus.consumer("keeps-up", [TOPIC])
        await consumer.start()
        footprints: list[int] = []
        received = 0
        deadline = time.monotonic() + 3.0
        sent = 0
        while time.monotonic() < deadline:
            await producer.send_many([OutgoingRecord(TOPIC, VALUE) for _ in range(10)])
            sent += 10
            records = await drain(consumer)
            received += len(records)
            if records:
                await consumer.commit({TP: records[-1].offset + 1})
            footprints.append(disk_bytes(bus))
            await asyncio.sleep(0.01)
        await producer.stop()
        received += len(await drain(consumer))
        await consumer.stop()
        assert received == sent  # keeping up: nothing skipped
        assert sent * 240 > 5 * max(footprints)  # far more went through than is kept
        settled = footprints[len(footprints) // 3 :]
        # Flat: the last third never exceeds what the first third peaked at by much.
        assert max(settled) <= 1.5 * max(footprints[: len(footprints) // 3]) + 4000

    asyncio.run(main())


# Appends from 8 tasks with small segments and prints each id once its send returned; argv[2]
# ("kill" or a count): run until killed, or send that many per task and exit.
_ROLLING_WRITER = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from forgeline.bus.embedded import EmbeddedBus
    from forgeline.bus.retention import RetentionPolicy, TopicRetention

    from forgeline.bus.port import OutgoingRecord

    async def main():
        policy = RetentionPolicy(default=TopicRetention(segment_bytes=3000, retention_ms=None))
        producer = EmbeddedBus(Path(sys.argv[1]), default_partitions=1, retention=policy).producer()
        limit = None if sys.argv[2] == "kill" else int(sys.argv[2])
        async def task(t):
            i = t
            while limit is None or i < limit * 8:
                await producer.send(OutgoingRecord("raw.test", b"%s-%d" % (sys.argv[3].encode(), i) + b"." * 300))
                print(i, flush=True)
                i += 8
        await asyncio.gather(*(task(t) for t in range(8)))
        await producer.stop()

    asyncio.run(main())
    """
)


async def read_all(root: Path) -> list[Record]:
    reader = EmbeddedBus(root).reader([TOPIC])
    await reader.start()
    records = await drain(reader)
    await reader.stop()
    return records


def test_two_processes_roll_segments_of_one_partition_without_losing_order(tmp_path: Path) -> None:
    children = [
        subprocess.Popen([sys.executable, "-c", _ROLLING_WRITER, str(tmp_path), "40", name], stdout=subprocess.PIPE)
        for name in "ab"
    ]
    for child in children:
        child.communicate(timeout=60)
        assert child.returncode == 0
    records = asyncio.run(read_all(tmp_path))
    assert [r.offset for r in records] == list(range(640))
    names = sorted(r.value.split(b".")[0].decode() for r in records)
    assert names == sorted(f"{n}-{i}" for n in "ab" for i in range(320))
    assert len(list((tmp_path / "topics" / TOPIC / "0").glob("*.log"))) > 20


def test_kill_9_while_rolling_loses_no_acknowledged_record(tmp_path: Path) -> None:
    with subprocess.Popen(
        [sys.executable, "-c", _ROLLING_WRITER, str(tmp_path), "kill", "k"], stdout=subprocess.PIPE, text=True
    ) as child:
        assert child.stdout is not None
        acknowledged: set[int] = set()
        deadline = time.monotonic() + 20
        while len(acknowledged) < 300 and time.monotonic() < deadline:
            line = child.stdout.readline()
            if not line:
                break
            acknowledged.add(int(line))
        os.kill(child.pid, signal.SIGKILL)
        acknowledged.update(int(line) for line in child.stdout.read().split())
        child.wait()
    assert len(acknowledged) >= 300

    async def main() -> None:
        records = await read_all(tmp_path)
        assert acknowledged <= {int(r.value.split(b".")[0].split(b"-")[1]) for r in records}
        assert [r.offset for r in records] == list(range(len(records)))
        bus = EmbeddedBus(tmp_path, retention=RetentionPolicy(default=TopicRetention(segment_bytes=3000)))
        await send(bus, 3)  # the next writer carries on at the next offset
        again = await read_all(tmp_path)
        assert [r.offset for r in again] == list(range(len(records) + 3))

    asyncio.run(main())


def test_an_idle_producer_still_deletes_expired_segments(tmp_path: Path) -> None:
    """A gateway refusing writes on a full disk appends nothing: retention must run anyway."""
    policy = RetentionPolicy(default=TopicRetention(segment_bytes=2000, retention_ms=300), check_interval_s=0.1)
    bus = EmbeddedBus(tmp_path, default_partitions=1, fsync=False, retention=policy)

    async def main() -> None:
        producer = bus.producer()
        await producer.start()
        await producer.send_many([OutgoingRecord(TOPIC, VALUE) for _ in range(40)])
        await producer.send_many([OutgoingRecord(TOPIC, VALUE) for _ in range(10)])  # closes segments
        assert len(segment_files(bus)) > 1
        deadline = time.monotonic() + 5
        while len(segment_files(bus)) > 1 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)  # no more sends
        assert len(segment_files(bus)) == 1
        await producer.stop()

    asyncio.run(main())


def test_a_reader_in_the_middle_of_a_compaction_reads_on_consistently(tmp_path: Path) -> None:
    bus = bus_with(tmp_path, segment_bytes=1500, retention_ms=None)
    topic = "control.test"

    async def main() -> None:
        producer = bus.producer()
        await producer.start()
        for round_ in range(10):
            await producer.send_many([OutgoingRecord(topic, VALUE + b"%d" % round_, key=k) for k in (b"a", b"b")])
        reader = bus.reader([topic])
        await reader.start()
        first = await reader.poll(3, timeout_s=0)  # holds the first segment open
        for round_ in range(10, 20):
            await producer.send_many([OutgoingRecord(topic, VALUE + b"%d" % round_, key=k) for k in (b"a", b"b")])
        await producer.stop()
        bus.enforce_retention(topic, 0)  # rewrites or deletes the segments it is reading
        rest = await drain(reader)
        offsets = [r.offset for r in first + rest]
        assert offsets == sorted(set(offsets)) and offsets[-1] == 39
        assert {r.key: r.value for r in first + rest} == {b"a": VALUE + b"19", b"b": VALUE + b"19"}
        await reader.stop()

    asyncio.run(main())
