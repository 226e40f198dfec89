"""Every topic a service reads or writes is one `forgeline topics ensure` provisions."""

from __future__ import annotations

import pytest

from forgeline.bus import topics
from forgeline.bus.kafka_admin import COMPACTED_TOPICS
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
