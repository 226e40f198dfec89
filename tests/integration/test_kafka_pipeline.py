"""The pipeline in Kafka mode: `forgeline up` with FORGELINE_BUS_URL=kafka://… on a real broker.

The module has a broker of its own (topics and consumer groups have fixed names, so two
pipelines must not share one), started from the cached jars. Killing the
processors mid-stream is in test_durability, parametrized over both buses.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from tests.fixtures.kafka import LocalKafka, kafka_env
from tests.fixtures.pipeline import ForgelineUp

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("kafka")]


@pytest.fixture(scope="module")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalKafka, ForgelineUp]]:
    """One broker (always the local launcher: it restarts on the same ports) and a pipeline on it.

    Both tests cut the pipeline off its broker and bring the broker back; each starts from
    a broker that is up and a pipeline that recovered.
    """
    env = {"FORGELINE_LOGISTER_RATE_LIMIT_REQUESTS": "1000000"}
    broker = LocalKafka(tmp_path_factory.mktemp("kafka-outage"))
    broker.start()
    try:
        up = ForgelineUp(broker.work_dir / "up", env={**env, **kafka_env(broker.bootstrap)}).start()
        try:
            yield broker, up
        finally:
            up.stop()
    finally:
        broker.stop()


@pytest.fixture
def own_kafka(kafka: tuple[LocalKafka, ForgelineUp]) -> LocalKafka:
    broker, up = kafka
    if broker.process is None:
        broker.start()
    up.wait_ready(120)
    return broker


@pytest.fixture
def kafka_up(kafka: tuple[LocalKafka, ForgelineUp], own_kafka: LocalKafka) -> ForgelineUp:
    return kafka[1]


def _post_log(up: ForgelineUp, message: str, release: str, timeout: float = 10) -> httpx.Response:
    body = {"event": {"event_type": "log", "message": message, "release": release}}
    return httpx.post(f"{up.base_url}/api/v1/ingest_events", json=body, headers=up.auth, timeout=timeout)


def test_broker_down_means_fast_503_and_not_ready_then_recovers_without_restart(
    own_kafka: LocalKafka, kafka_up: ForgelineUp
) -> None:
    release = f"outage-{uuid.uuid4()}"
    before = _post_log(kafka_up, "before the outage", release)
    for _ in range(20):  # a busy test host may time out a first send; the broker is up
        if before.status_code != 503:
            break
        time.sleep(0.5)
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


async def _send_with_ids(up: ForgelineUp, release: str, total: int, on_ack: int, action: object) -> set[str]:
    """POST ``total`` logs, each with its own client uuid, retried on 503 until acknowledged.

    A retry carries the same uuid, so a record the broker took after a 503 is the same
    event, not a new one. Returns the acknowledged event ids.
    """
    acked: set[str] = set()
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(total):
        queue.put_nowait(i)
    fired = False

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal fired
        while not queue.empty():
            i = queue.get_nowait()
            event = {"event_type": "log", "message": f"line {i}", "release": release, "uuid": str(uuid.uuid4())}
            deadline = time.monotonic() + 120
            while True:
                try:
                    response = await client.post("/api/v1/ingest_events", json={"event": event}, headers=up.auth)
                except httpx.TransportError:
                    # No answer: maybe taken, maybe not; the same uuid makes the retry safe.
                    await asyncio.sleep(0.2)
                    continue
                if response.status_code == 201 or time.monotonic() > deadline:
                    break
                assert response.status_code == 503, response.text  # only "bus unavailable" may be retried
                await asyncio.sleep(0.2)
            assert response.status_code == 201, response.text
            acked.add(response.json()["id"])
            if not fired and len(acked) >= on_ack:
                fired = True
                action()  # type: ignore[operator]

    async with httpx.AsyncClient(base_url=up.base_url, timeout=30) as client:
        await asyncio.gather(*(worker(client) for _ in range(16)))
    return acked


@pytest.mark.slow
def test_kill_9_broker_under_load_then_restart_keeps_every_acked_event_once(
    own_kafka: LocalKafka, kafka_up: ForgelineUp
) -> None:
    release = f"broker-kill-{uuid.uuid4()}"
    restarted = threading.Event()

    def kill_and_restart() -> None:
        own_kafka.kill()  # kill -9 mid-stream: produce requests in flight die with it

        def restart() -> None:
            time.sleep(2)
            own_kafka.start()  # same ports, same data dir
            restarted.set()

        threading.Thread(target=restart, daemon=True).start()

    total = 3_000
    acked = asyncio.run(_send_with_ids(kafka_up, release, total=total, on_ack=1_000, action=kill_and_restart))
    assert restarted.wait(60), own_kafka.tail_log()
    assert len(acked) == total

    where = f"FROM forgeline.logs FINAL WHERE release = '{release}'"
    count = kafka_up.wait_for(f"SELECT count() {where}", total, timeout_s=120)
    assert count == total, kafka_up.tail_log()
    assert kafka_up.scalar(f"SELECT uniqExact(event_id) {where}") == total
    assert set(kafka_up.sql(f"SELECT event_id {where}").split()) == acked
