"""Every topic a service reads or writes is one `forgeline topics ensure` provisions."""

from __future__ import annotations

import pytest

from forgeline.bus import topics
from forgeline.bus.kafka_admin import COMPACTED_TOPICS, topic_config
from forgeline.bus.kafka_options import KafkaOptions
from forgeline.schemas.records import KINDS_BY_TOPIC
from services.normalizer.steps import NORMALIZERS
from services.writer.main import DEAD_LETTER_SOURCES

pytestmark = pytest.mark.unit


def test_every_topic_in_use_is_provisioned() -> None:
    provisioned = set(topics.provisioned_topics())
    constants = {v for k, v in vars(topics).items() if k.isupper() and isinstance(v, str) and k != "TICK_HEADER"}
    assert constants <= provisioned
    assert set(NORMALIZERS) <= provisioned
    assert set(KINDS_BY_TOPIC) <= provisioned
    assert set(DEAD_LETTER_SOURCES) <= provisioned
    assert {
        topics.dead_letter_topic(g) for g in ("normalizer", "writer", "errors", "spans", "monitors", "notifier")
    } <= provisioned
    assert len(provisioned) == len(topics.provisioned_topics())  # no topic twice


def test_control_topics_are_exactly_the_compacted_ones() -> None:
    compacted = {t for t in topics.provisioned_topics() if t in COMPACTED_TOPICS}
    assert compacted == set(topics.CONTROL_TOPICS)
    # A compacted topic refuses records without a key: flush requests are not state.
    assert topics.CONTROL_EXPORTER not in COMPACTED_TOPICS


def test_kafka_topics_are_created_with_the_retention_settings() -> None:
    options = KafkaOptions.from_url("kafka://k:9092?retention_ms=3600000&retention_bytes=1048576")
    raw = topic_config(topics.RAW_FORGE, options, 3)
    assert (raw["cleanup.policy"], raw["retention.ms"], raw["retention.bytes"]) == ("delete", "3600000", "1048576")
    tenancy = topic_config(topics.CONTROL_TENANCY, options, 3)
    assert tenancy["cleanup.policy"] == "compact" and "retention.ms" not in tenancy
    assert "retention.bytes" not in topic_config(topics.RAW_FORGE, KafkaOptions.from_url("kafka://k:9092"), 1)
    # Per-topic overrides apply on Kafka as on the embedded log.
    exporter = topic_config(topics.CONTROL_EXPORTER, options, 3)
    assert exporter["retention.ms"] == str(topics.RETENTION_OVERRIDES[topics.CONTROL_EXPORTER]["retention.ms"])
