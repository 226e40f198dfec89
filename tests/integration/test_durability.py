"""Durability of the pipeline on both buses: kill -9, restarts, replays, dead letters."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from forgeline.bus.factory import create_bus
from forgeline.bus.port import OutgoingRecord
from forgeline.bus.topics import RAW_LOGISTER
from tests.fixtures.kafka import BUSES, kafka_pipeline
from tests.fixtures.pipeline import ForgelineUp, post_until_acknowledged

pytestmark = [pytest.mark.integration, pytest.mark.slow]


ENV = {"FORGELINE_LOGISTER_RATE_LIMIT_REQUESTS": "1000000"}


@pytest.fixture(scope="module")
def kafka_up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ForgelineUp]:
    with kafka_pipeline(tmp_path_factory.mktemp("durability-kafka"), ENV) as (_, pipeline):
        yield pipeline


@pytest.fixture(params=BUSES)
def up(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ForgelineUp]:
    """Embedded: a fresh pipeline per test. Kafka: one per module, on a broker of its own."""
    if request.param == "kafka":
        yield request.getfixturevalue("kafka_up")
        return
    # Load, not abuse: lift the per-token limit so the stream measures durability only.
    pipeline = ForgelineUp(tmp_path / "data", env=ENV).start()
    try:
        yield pipeline
    finally:
        pipeline.stop()


async def _send_stream(
    up: ForgelineUp, release: str, total: int, on_ack: int, action: object, concurrency: int = 32
) -> list[str]:
    """POST ``total`` log events; call ``action()`` once ``on_ack`` have been acknowledged."""
    ids: list[str] = []
    sent_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(total):
        queue.put_nowait(i)
    fired = False

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal fired
        while not queue.empty():
            i = queue.get_nowait()
            # A client uuid, as the SDK sends: a retry after a lost answer is the same event.
            event_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{release}/{i}"))
            # And its own time: a retry is the identical event (occurred_at is in the table's key).
            event = {"event_type": "log", "message": f"stream line {i}", "release": release, "uuid": event_id}
            body = {"event": {**event, "occurred_at": sent_at}}
            response = await post_until_acknowledged(client, "/api/v1/ingest_events", body, up.auth)
            ids.append(response.json()["id"])
            if not fired and len(ids) >= on_ack:
                fired = True
                action()  # type: ignore[operator]

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=up.base_url, limits=limits, timeout=30) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    return ids


def test_kill_9_processors_mid_stream_loses_and_duplicates_nothing(up: ForgelineUp) -> None:
    release = f"durability-{uuid.uuid4()}"
    victim = up.children()["processors"]

    def kill_processors() -> None:
        os.kill(victim, signal.SIGKILL)

    ids = asyncio.run(_send_stream(up, release, total=10_000, on_ack=3_000, action=kill_processors))
    assert len(ids) == len(set(ids)) == 10_000

    where = f"FROM forgeline.logs FINAL WHERE release = '{release}'"
    count = up.wait_for(f"SELECT count() {where}", 10_000, timeout_s=180)
    assert count == 10_000, up.tail_log()
    assert up.children()["processors"] != victim, "the supervisor restarted the processors"
    assert up.scalar(f"SELECT uniqExact(event_id) {where}") == 10_000
    stored = set(up.sql(f"SELECT event_id {where}").split())
    assert stored == set(ids)
    # Stays exact: nothing trickles in after the count was reached.
    time.sleep(1.5)
    assert up.scalar(f"SELECT count() {where}") == 10_000


def test_kill_9_gateway_right_after_201_keeps_the_event(up: ForgelineUp) -> None:
    victim = up.children()["gateway"]
    response = httpx.post(
        f"{up.base_url}/api/v1/ingest_events",
        json={"event": {"event_type": "error", "message": "acknowledged then killed"}},
        headers=up.auth,
    )
    os.kill(victim, signal.SIGKILL)
    assert response.status_code == 201
    event_id = response.json()["id"]
    assert up.wait_for(f"SELECT count() FROM forgeline.errors WHERE event_id = '{event_id}'", 1, 30) == 1
    # The supervisor brings the gateway back.
    up.wait_ready(60)
    assert up.children()["gateway"] != victim


@pytest.mark.parametrize("up", ["embedded"], indirect=True)  # on Kafka: the kill -9 tests only (suite time)
def test_replaying_every_topic_from_zero_creates_no_duplicate_rows(up: ForgelineUp) -> None:
    release = f"replay-{uuid.uuid4()}"
    for i in range(50):
        response = httpx.post(
            f"{up.base_url}/api/v1/ingest_events",
            json={
                "event": {
                    "event_type": "metric",
                    "message": "fps",
                    "release": release,
                    "context": {"value": i},
                }
            },
            headers=up.auth,
        )
        assert response.status_code == 201
    where = f"FROM forgeline.metrics FINAL WHERE release = '{release}'"
    assert up.wait_for(f"SELECT count() {where}", 50) == 50
    up.stop()
    # Forget every committed offset: every processor replays the whole log.
    up.forget_offsets(("normalizer", "writer", "errors", "spans", "monitors"))
    up.start()
    time.sleep(3)  # let the replay run; the count must not move
    assert up.scalar(f"SELECT count() {where}") == 50
    assert up.scalar(f"SELECT sum(value) {where}") == sum(range(50))


@pytest.mark.parametrize("up", ["embedded"], indirect=True)  # on Kafka: the kill -9 tests only (suite time)
def test_unprocessable_record_goes_to_dead_letters_and_does_not_block(up: ForgelineUp) -> None:
    bus = create_bus(up.bus_url)

    async def inject() -> None:
        producer = bus.producer()
        await producer.start()
        # Same key → same partition as the good event that follows it.
        await producer.send(OutgoingRecord(RAW_LOGISTER, b"{not json", key=b"poison", partition=0))
        await producer.stop()

    asyncio.run(inject())
    response = httpx.post(
        f"{up.base_url}/api/v1/ingest_events",
        json={"event": {"event_type": "log", "message": "after the poison"}},
        headers=up.auth,
    )
    event_id = response.json()["id"]
    assert up.wait_for(f"SELECT count() FROM forgeline.logs WHERE event_id = '{event_id}'", 1) == 1
    assert up.wait_for("SELECT count() FROM forgeline.dead_letters WHERE consumer_group = 'normalizer'", 1) == 1
    row = up.sql("SELECT source_topic, reason, payload FROM forgeline.dead_letters").strip().split("\t")
    assert row[0] == RAW_LOGISTER
    assert row[1].startswith("bad_raw_record")
    assert row[2] == "{not json"
