"""The sizing bench measures what exists: its topics and tables are the product's, and its
MessagePack batches are distinct (identical bodies would be stored once)."""

from __future__ import annotations

import msgpack
import pytest

from forgeline.bus.topics import RAW_TOPICS
from forgeline.lifecycle.retention import TABLES_BY_NAME
from forgeline.schemas.records import KINDS_BY_TOPIC
from services.bench.sizing import FAMILIES, _game_batch

pytestmark = pytest.mark.unit


def test_families_name_real_topics_and_tables() -> None:
    for family in FAMILIES:
        assert set(family.topics) <= set(RAW_TOPICS) | set(KINDS_BY_TOPIC), family
        assert set(family.tables) <= set(TABLES_BY_NAME), family


def test_game_batches_differ_from_one_batch_to_the_next() -> None:
    first, second = _game_batch("app", 8, 0), _game_batch("app", 8, 200)
    assert first != second
    items = msgpack.unpackb(first)
    assert len(items) == 8 and {i["app_id"] for i in items} == {"app"}
