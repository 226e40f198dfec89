"""The pipeline in Kafka mode: `forgeline up` with FORGELINE_BUS_URL=kafka://… on a real broker.

Each test gets a broker of its own (topics and consumer groups have fixed names, so two
pipelines must not share one), started from the cached jars in a few seconds.
"""

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

from tests.fixtures.kafka import LocalKafka
from tests.fixtures.pipeline import ForgelineUp
from tests.integration.test_durability import _send_stream

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("kafka")]


@pytest.fixture
def kafka_up(own_kafka: LocalKafka, tmp_path: Path) -> Iterator[ForgelineUp]:
    env = {
        "FORGELINE_BUS_URL": f"kafka://{own_kafka.bootstrap}?session_timeout_ms=3000",
        "FORGELINE_LOGISTER_RATE_LIMIT_REQUESTS": "1000000",
    }
    up = ForgelineUp(tmp_path / "data", env=env).start()
    try:
        yield up
    finally:
        up.stop()


def _post_log(up: ForgelineUp, message: str, release: str, timeout: float = 10) -> httpx.Response:
    body = {"event": {"event_type": "log", "message": message, "release": release}}
    return httpx.post(f"{up.base_url}/api/v1/ingest_events", json=body, headers=up.auth, timeout=timeout)


def test_broker_down_means_fast_503_and_not_ready_then_recovers_without_restart(
    own_kafka: LocalKafka, kafka_up: ForgelineUp
) -> None:
    release = f"outage-{uuid.uuid4()}"
    before = _post_log(kafka_up, "before the outage", release)
    assert before.status_code == 201, before.text
    gateway_pid = kafka_up.children()["gateway"]

    own_kafka.kill()  # kill -9: no controlled shutdown, connections just die
    started = time.monotonic()
    refused = _post_log(kafka_up, "during the outage", release)
    elapsed = time.monotonic() - started
    assert refused.status_code == 503, refused.text
    assert refused.headers["Retry-After"] == "1"
    assert elapsed < 1.0, f"503 took {elapsed:.2f}s"

    deadline = time.monotonic() + 10
    ready = httpx.get(f"{kafka_up.base_url}/ready", timeout=5)
    while ready.status_code != 503 and time.monotonic() < deadline:
        time.sleep(0.2)
        ready = httpx.get(f"{kafka_up.base_url}/ready", timeout=5)
    assert ready.status_code == 503, ready.text
    assert ready.json()["checks"]["bus"] is False

    own_kafka.start()  # same ports, same data
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if httpx.get(f"{kafka_up.base_url}/ready", timeout=5).status_code == 200:
            break
        time.sleep(0.2)
    after = _post_log(kafka_up, "after the outage", release)
    assert after.status_code == 201, after.text
    assert kafka_up.children()["gateway"] == gateway_pid, "the gateway recovered without a restart"

    ids = [before.json()["id"], after.json()["id"]]
    where = f"FROM forgeline.logs FINAL WHERE event_id IN ({', '.join(repr(i) for i in ids)})"
    assert kafka_up.wait_for(f"SELECT count() {where}", 2, timeout_s=90) == 2, kafka_up.tail_log()


@pytest.mark.slow
def test_kill_9_processors_mid_stream_on_kafka_loses_and_duplicates_nothing(kafka_up: ForgelineUp) -> None:
    release = f"kafka-durability-{uuid.uuid4()}"
    victim = kafka_up.children()["processors"]

    def kill_processors() -> None:
        os.kill(victim, signal.SIGKILL)

    total = 5_000
    ids = asyncio.run(_send_stream(kafka_up, release, total=total, on_ack=1_500, action=kill_processors))
    assert len(ids) == len(set(ids)) == total

    where = f"FROM forgeline.logs FINAL WHERE release = '{release}'"
    count = kafka_up.wait_for(f"SELECT count() {where}", total, timeout_s=120)
    assert count == total, kafka_up.tail_log()
    assert kafka_up.children()["processors"] != victim, "the supervisor restarted the processors"
    assert kafka_up.scalar(f"SELECT uniqExact(event_id) {where}") == total
    assert set(kafka_up.sql(f"SELECT event_id {where}").split()) == set(ids)
