"""Stateful processors under kill -9 and full replays: the same final tables as a calm run."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from forgeline.bus.factory import create_bus
from tests.conftest import read_all
from tests.fixtures.kafka import BUSES, kafka_pipeline
from tests.fixtures.pipeline import ForgelineUp, post_until_acknowledged

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TEMPLATES = ["cart {n} not found", "timeout after {n} ms", "order {n} failed", "user {n} locked", "slot {n} busy"]


ENV = {
    "FORGELINE_LOGISTER_RATE_LIMIT_REQUESTS": "1000000",
    "FORGELINE_SPAN_QUIET_SECONDS": "0.5",
    "FORGELINE_MONITOR_TICK_SECONDS": "0.2",
}


@pytest.fixture(scope="module")
def kafka_up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ForgelineUp]:
    with kafka_pipeline(tmp_path_factory.mktemp("streams-kafka"), ENV) as (_, pipeline):
        yield pipeline


@pytest.fixture(params=BUSES)
def up(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ForgelineUp]:
    """Embedded: a fresh pipeline per test. Kafka: one per module, on a broker of its own."""
    if request.param == "kafka":
        yield request.getfixturevalue("kafka_up")
        return
    pipeline = ForgelineUp(tmp_path / "data", env=ENV).start()
    try:
        yield pipeline
    finally:
        pipeline.stop()


def workload(marker: str) -> list[tuple[str, dict[str, Any]]]:
    """Errors over 5 groups, 60 traces of 5 spans (children first, shuffled), 3 monitors."""
    items: list[tuple[str, dict[str, Any]]] = []
    for i in range(600):
        message = f"{marker} " + TEMPLATES[i % 5].format(n=1000 + i)
        # A client uuid: a retry after a 503 whose record landed anyway is the same event.
        event_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{marker}/{i}"))
        event = {"event_type": "error", "message": message, "uuid": event_id}
        items.append(("/api/v1/ingest_events", {"event": event}))
    for t in range(60):
        trace = f"{marker}-t{t}"
        tree = [("root", ""), ("a", "root"), ("b", "root"), ("a1", "a"), ("a2", "a")]
        for span_id, parent in tree:
            span = {"event_type": "span", "name": span_id, "trace_id": trace, "span_id": span_id,
                    "parent_span_id": parent, "duration_ms": 10, "uuid": str(uuid.uuid4())}  # fmt: skip
            items.append(("/api/v1/ingest_events", {"event": span}))
    for i in range(90):
        check_in = {"slug": f"{marker}-m{i % 3}", "status": "ok", "expected_interval_seconds": 3600}
        body = {"check_in": {**check_in, "uuid": str(uuid.uuid4())}}
        items.append(("/api/v1/check_ins", body))
    random.Random(7).shuffle(items)
    return items


async def send(
    up: ForgelineUp, items: list[tuple[str, dict[str, Any]]], on_ack: int, action: Callable[[], None]
) -> None:
    queue: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()
    for item in items:
        queue.put_nowait(item)
    acked = 0

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal acked
        while not queue.empty():
            path, body = queue.get_nowait()
            await post_until_acknowledged(client, path, body, up.auth)
            acked += 1
            if acked == on_ack:
                action()

    async with httpx.AsyncClient(base_url=up.base_url, timeout=30) as client:
        await asyncio.gather(*(worker(client) for _ in range(16)))


def final_tables(up: ForgelineUp, marker: str) -> dict[str, str]:
    return {
        "groups": up.sql(
            "SELECT title, event_count, status FROM forgeline.error_groups FINAL "
            f"WHERE startsWith(title, '{marker}') ORDER BY title"
        ),
        "group_events": up.sql(
            "SELECT count(), uniqExact(event_id) FROM forgeline.error_group_events FINAL WHERE group_id IN "
            f"(SELECT group_id FROM forgeline.error_groups FINAL WHERE startsWith(title, '{marker}'))"
        ),
        "traces": up.sql(
            "SELECT span_count, max_depth, orphan_count, root_span_id, count() FROM forgeline.trace_summaries FINAL "
            f"WHERE startsWith(trace_id, '{marker}') GROUP BY span_count, max_depth, orphan_count, root_span_id"
        ),
        "span_tree": up.sql(
            "SELECT span_id, depth, is_orphan, count() FROM forgeline.span_tree FINAL "
            f"WHERE startsWith(trace_id, '{marker}') GROUP BY span_id, depth, is_orphan ORDER BY span_id"
        ),
        "monitors": up.sql(
            f"SELECT slug, state FROM forgeline.monitor_states FINAL WHERE startsWith(slug, '{marker}') ORDER BY slug"
        ),
        "monitor_changes": up.sql(
            "SELECT slug, state, count() FROM forgeline.monitor_state_changes FINAL "
            f"WHERE startsWith(slug, '{marker}') GROUP BY slug, state ORDER BY slug, state"
        ),
    }


def wait_settled(up: ForgelineUp, marker: str) -> dict[str, str]:
    where = f"WHERE startsWith(title, '{marker}')"
    assert up.wait_for(f"SELECT sum(event_count) FROM forgeline.error_groups FINAL {where}", 600, 120) == 600
    traces = f"FROM forgeline.trace_summaries FINAL WHERE startsWith(trace_id, '{marker}') AND span_count = 5"
    assert up.wait_for(f"SELECT count() {traces}", 60, 60) == 60, up.tail_log()
    assert up.wait_for(f"SELECT count() FROM forgeline.monitor_states FINAL WHERE startsWith(slug, '{marker}')", 3) == 3
    time.sleep(1.5)  # nothing may trickle in after the counts were reached
    return final_tables(up, marker)


EXPECTED_TRACES = "5\t2\t0\troot\t60\n"


def test_kill_9_mid_stream_gives_the_same_final_tables(up: ForgelineUp) -> None:
    marker = f"k{uuid.uuid4().hex[:8]}"
    victim = up.children()["processors"]
    asyncio.run(send(up, workload(marker), on_ack=400, action=lambda: os.kill(victim, signal.SIGKILL)))
    tables = wait_settled(up, marker)
    assert up.children()["processors"] != victim
    assert [line.split("\t")[1:] for line in tables["groups"].splitlines()] == [["120", "unresolved"]] * 5
    assert tables["group_events"] == "600\t600\n"
    assert tables["traces"] == EXPECTED_TRACES
    assert tables["monitors"].split() == [f"{marker}-m{i}" if j == 0 else "ok" for i in range(3) for j in (0, 1)]
    assert "missed" not in tables["monitor_changes"]

    # "new" went out once per group; a replay may repeat a record, never with a new id.
    bus = create_bus(up.bus_url)
    notes = [orjson.loads(r.value) for r in read_all(bus, "events.error_groups")]
    ids = {n["notification_id"] for n in notes if n["title"].startswith(marker)}
    assert len(ids) == 5


@pytest.mark.parametrize("up", ["embedded"], indirect=True)
def test_replaying_the_processors_from_zero_changes_nothing(up: ForgelineUp) -> None:
    marker = f"r{uuid.uuid4().hex[:8]}"
    asyncio.run(send(up, workload(marker), on_ack=-1, action=lambda: None))
    before = wait_settled(up, marker)
    up.stop()
    up.forget_offsets(("errors", "spans", "monitors"))
    up.start()
    time.sleep(4)  # let the replay run; nothing may change
    assert final_tables(up, marker) == before
