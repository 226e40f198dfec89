"""`forgeline topics ensure` on a real Kafka broker: counts, compaction, retention, idempotence."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from forgeline.bus.topics import (
    COMPACT_DELETE_TOPICS,
    CONTROL_ERROR_GROUPS,
    CONTROL_NOTIFY_DELIVERIES,
    CONTROL_TENANCY,
    CONTROL_TOPICS,
    RAW_LOGISTER,
    TYPED_ERRORS,
    dead_letter_topic,
    provisioned_topics,
)
from tests.fixtures.kafka import LocalKafka
from tests.fixtures.pipeline import REPO

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("kafka")]


def _ensure(bootstrap: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FORGELINE_")}
    env["FORGELINE_BUS_URL"] = f"kafka://{bootstrap}?retention_ms=3600000"
    env["FORGELINE_PARTITIONS"] = "5"
    return subprocess.run(
        [sys.executable, "-m", "services.cli.main", "topics", "ensure"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def _configs(bootstrap: str, topics: list[str]) -> dict[str, dict[str, Any]]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        responses = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, t) for t in topics])
    finally:
        await admin.close()
    out: dict[str, dict[str, Any]] = {}
    for response in responses:
        for _code, _msg, _type, name, entries in response.resources:
            out[name] = {entry[0]: entry[1] for entry in entries}
    return out


def test_topics_ensure_creates_every_topic_once(own_kafka: LocalKafka) -> None:
    kafka_broker = own_kafka  # its own broker: the session one may already have these topics
    first = _ensure(kafka_broker.bootstrap)
    assert first.returncode == 0, first.stderr
    counts = dict(line.split("\t") for line in first.stdout.splitlines())
    assert counts[RAW_LOGISTER] == "5"
    assert counts[TYPED_ERRORS] == "5"
    assert counts[dead_letter_topic("writer")] == "5"
    assert counts[CONTROL_TENANCY] == "1"  # FIXED_PARTITIONS: one ordered history
    # Same count as typed.errors: a group's events and status changes share a consumer.
    assert counts[CONTROL_ERROR_GROUPS] == counts[TYPED_ERRORS]
    assert set(counts) == set(provisioned_topics())

    again = _ensure(kafka_broker.bootstrap)  # idempotent: same answer, no error
    assert again.returncode == 0, again.stderr
    assert again.stdout == first.stdout

    configs = asyncio.run(_configs(kafka_broker.bootstrap, [*CONTROL_TOPICS, RAW_LOGISTER]))
    for topic in CONTROL_TOPICS:
        wanted = "compact,delete" if topic in COMPACT_DELETE_TOPICS else "compact"
        assert configs[topic]["cleanup.policy"] == wanted, topic
    # The delivery log forgets an id only after its source records (retention.ms 1 h here) are gone.
    assert int(configs[CONTROL_NOTIFY_DELIVERIES]["retention.ms"]) > 2 * 3600000
    assert configs[RAW_LOGISTER]["cleanup.policy"] == "delete"
    assert configs[RAW_LOGISTER]["retention.ms"] == "3600000"
