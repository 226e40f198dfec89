"""cleanup.policy=compact,delete: the notifier's delivery log forgets old keys, state topics never do."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from types import SimpleNamespace

import orjson
import pytest

from forgeline.bus.embedded import EmbeddedBus, cleanup
from forgeline.bus.embedded.layout import segments
from forgeline.bus.factory import create_bus, retention_policy
from forgeline.bus.follow import read_to_end
from forgeline.bus.kafka_admin import BROKER_SEGMENT_MS, topic_config
from forgeline.bus.kafka_options import KafkaOptions
from forgeline.bus.port import OutgoingRecord, Record
from forgeline.bus.retention import DAY_MS, key_retention_ms
from forgeline.bus.topics import (
    COMPACT_DELETE_TOPICS,
    CONTROL_NOTIFY_DELIVERIES,
    CONTROL_TENANCY,
    CONTROL_TOPICS,
    RAW_FORGE,
)
from forgeline.config import Settings
from forgeline.tenancy.store import TenancyAdmin, TenancyFollower
from services.notifier.delivery import DeliveryLog

pytestmark = pytest.mark.unit

HOUR_MS = 3600 * 1000


def small_segments_bus(root: Path, **settings: int) -> EmbeddedBus:
    values = {"bus_segment_bytes": 512, "bus_retention_ms": 7 * DAY_MS, "bus_segment_ms": HOUR_MS, **settings}
    bus = create_bus(f"embedded://{root}", 1, Settings(data_dir=root, min_free_bytes=0, **values))  # type: ignore[arg-type]
    assert isinstance(bus, EmbeddedBus)
    return bus


async def read_all(bus: EmbeddedBus, topic: str) -> list[Record]:
    reader = bus.reader([topic])
    await reader.start()
    records: list[Record] = []
    await read_to_end(reader, lambda r: bool(records.append(r)) or True, timeout_s=5)
    await reader.stop()
    return records


def active_segment_keys(bus: EmbeddedBus, topic: str, records: list[Record]) -> set[bytes | None]:
    """Keys of the records in the segment being written (compaction never touches it)."""
    base = segments(bus.partition_dir(topic, 0))[-1].base
    return {r.key for r in records if r.offset >= base}


def test_only_the_delivery_log_expires_keys_and_its_retention_outlives_the_replayable_log() -> None:
    retention_ms, segment_ms = 7 * DAY_MS, HOUR_MS
    policy = retention_policy(
        Settings(bus_retention_ms=retention_ms, bus_segment_ms=segment_ms, bus_retention_bytes=1 << 30)
    )
    deliveries = policy.for_topic(CONTROL_NOTIFY_DELIVERIES)
    assert deliveries.cleanup_policy == "compact,delete" and deliveries.compact
    # The longest a source record can stay replayable is retention.ms + segment.ms.
    assert deliveries.key_expiry_ms is not None and deliveries.key_expiry_ms >= 2 * (retention_ms + segment_ms)
    assert deliveries.retention_bytes is None  # never forgotten for space
    for topic in set(CONTROL_TOPICS) - set(COMPACT_DELETE_TOPICS):
        settings = policy.for_topic(topic)
        assert (settings.cleanup_policy, settings.key_expiry_ms) == ("compact", None), topic
    assert policy.for_topic(RAW_FORGE).cleanup_policy == "delete"
    # A log kept forever (by age, or segments closed by size only) keeps every delivery id.
    assert retention_policy(Settings(bus_retention_ms=-1)).for_topic(CONTROL_NOTIFY_DELIVERIES).key_expiry_ms is None
    assert retention_policy(Settings(bus_segment_ms=-1)).for_topic(CONTROL_NOTIFY_DELIVERIES).key_expiry_ms is None
    assert key_retention_ms(None, HOUR_MS) is None


def test_kafka_creates_the_delivery_log_compact_delete_and_the_state_topics_compact() -> None:
    options = KafkaOptions.from_url("kafka://k:9092?retention_ms=3600000&retention_bytes=1048576")
    deliveries = topic_config(CONTROL_NOTIFY_DELIVERIES, options, 3)
    assert deliveries["cleanup.policy"] == "compact,delete"
    # Longer than a source record can live: its retention.ms plus the broker's segment roll.
    assert int(deliveries["retention.ms"]) >= 2 * (3600000 + BROKER_SEGMENT_MS)
    assert deliveries["retention.bytes"] == "-1"  # the retention_bytes option is for the data topics
    default = topic_config(CONTROL_NOTIFY_DELIVERIES, KafkaOptions.from_url("kafka://k:9092"), 1)
    assert int(default["retention.ms"]) == 2 * (7 * DAY_MS + BROKER_SEGMENT_MS)  # 28 days
    for topic in set(CONTROL_TOPICS) - set(COMPACT_DELETE_TOPICS):
        config = topic_config(topic, options, 3)
        assert config["cleanup.policy"] == "compact", topic
        assert "retention.ms" not in config and "retention.bytes" not in config, topic
    raw = topic_config(RAW_FORGE, options, 3)
    assert (raw["cleanup.policy"], raw["retention.ms"]) == ("delete", "3600000")


def test_keys_whose_last_record_is_old_go_and_recent_ones_stay(tmp_path: Path) -> None:
    bus = small_segments_bus(tmp_path)
    topic = CONTROL_NOTIFY_DELIVERIES
    expiry_ms = 10 * DAY_MS

    async def write(keys: list[str], state: str) -> None:
        producer = bus.producer()
        await producer.start()
        for key in keys:
            doc = orjson.dumps({"id": key, "state": state, "pad": "x" * 60})
            await producer.send(OutgoingRecord(topic, doc, key=key.encode()))
        await producer.stop()

    async def main() -> None:
        old = [f"old{i}" for i in range(8)]
        await write(old, "pending")
        await write(old, "delivered")
        await write([], "")
        time.sleep(0.01)
        boundary_ms = time.time_ns() // 1_000_000
        time.sleep(0.01)
        recent = [f"new{i}" for i in range(8)]
        await write(recent, "pending")
        await write(["old0"], "dead")  # a late outcome makes an old key recent again
        await write(recent, "delivered")
        await write([f"tail{i}" for i in range(8)], "pending")  # pushes the rest into closed segments
        before = await read_all(bus, topic)
        changed = cleanup.compact(bus.partition_dir(topic, 0), False, expiry_ms, now_ms=boundary_ms + expiry_ms)
        assert changed > 0
        after = await read_all(bus, topic)
        last = {r.key: orjson.loads(r.value)["state"] for r in after}
        kept_in_active = active_segment_keys(bus, topic, after)
        for i in range(1, 8):
            assert f"old{i}".encode() not in last or f"old{i}".encode() in kept_in_active
        assert last[b"old0"] == "dead"
        for key in recent:
            assert last[key.encode()] == "delivered"
        assert len(after) < len(before)
        # What stayed is what a reader saw before, minus the forgotten keys: nothing reordered.
        assert [r.offset for r in after] == sorted(r.offset for r in after)

    asyncio.run(main())


def test_a_year_later_the_delivery_log_forgot_old_ids_and_tenancy_forgot_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The clock of compaction jumps a year ahead: every delivery id in a closed segment is gone,
    while every tenancy key stays, a token revocation included (it must never be forgotten)."""
    bus = small_segments_bus(tmp_path)

    async def main() -> tuple[str, str]:
        async with TenancyAdmin(bus) as admin:
            org = await admin.create_organisation("studio")
            project = await admin.create_project(org.id, "game")
            _, kept_secret = await admin.create_token("logister", project.id, "production")
            revoked, revoked_secret = await admin.create_token("logister", project.id, "production")
            await admin.revoke_token(revoked.id)
            for i in range(20):  # the revocation is in a closed segment by now
                await admin.create_environment(project.id, f"env{i}")
        producer = bus.producer()
        await producer.start()
        delivery_log = DeliveryLog(bus, producer)
        ids = [f"delivery-{i}" for i in range(30)]
        await delivery_log.mark_many(ids, "pending")
        for did in ids:
            await delivery_log.mark(did, "delivered")
        await producer.stop()
        return kept_secret, revoked_secret

    kept_secret, revoked_secret = asyncio.run(main())
    tenancy_keys = {r.key for r in asyncio.run(read_all(bus, CONTROL_TENANCY))}

    async def tenancy_state() -> tuple[object, ...]:
        follower = TenancyFollower(bus)
        await follower.start()
        table = follower.table
        state = (table.organisations, table.projects, table.environments, table.tokens)
        await follower.stop()
        return state

    state_before = asyncio.run(tenancy_state())
    year_ns = 365 * DAY_MS * 1_000_000
    monkeypatch.setattr(cleanup, "time", SimpleNamespace(time_ns=lambda: time.time_ns() + year_ns))
    assert bus.enforce_retention(CONTROL_NOTIFY_DELIVERIES, 0) > 0
    bus.enforce_retention(CONTROL_TENANCY, 0)

    async def check() -> None:
        deliveries = await read_all(bus, CONTROL_NOTIFY_DELIVERIES)
        survivors = {r.key for r in deliveries}
        assert survivors <= active_segment_keys(bus, CONTROL_NOTIFY_DELIVERIES, deliveries)
        assert len(survivors) < 30
        assert await tenancy_state() == state_before
        follower = TenancyFollower(bus)
        await follower.start()
        assert len(follower.table.environments) == 20
        assert follower.table.authenticate(kept_secret, ("logister",)) is not None
        assert follower.table.authenticate(revoked_secret, ("logister",)) is None  # still revoked
        await follower.stop()
        # Compaction of tenancy drops superseded records only: every key is still there.
        assert {r.key for r in await read_all(bus, CONTROL_TENANCY)} == tenancy_keys

    asyncio.run(check())
