"""Normalizer steps: every typed record gets a partition key (a missing one crash-looped the normalizer)."""

from __future__ import annotations

import time
import uuid

import orjson
import pytest

from forgeline.bus.port import Record
from forgeline.bus.topics import RAW_MSGPACK, TYPED_LEVEL_MODELS
from forgeline.schemas.records import KINDS, RecordKind
from services.normalizer.game import split_msgpack
from services.normalizer.keys import partition_key

pytestmark = pytest.mark.unit


def model_record(model_id: uuid.UUID) -> Record:
    """A stored level model as POST /api/models appends it to raw.msgpack."""
    value = {
        "v": 1,
        "route": "model",
        "id": str(model_id),
        "organisation_id": "org",
        "project_id": "proj",
        "environment": "production",
        "app_id": "app-1",
        "token_id": "tok",
        "received_at": int(time.time() * 1000),
        "body": {
            "app_name": "default-game",
            "level_name": "Level_1",
            "filename": "level1.glb",
            "content_type": "model/gltf-binary",
            "size_bytes": 11,
            "sha256": "0" * 64,
            "storage_key": "proj/models/app-1/x",
        },
    }
    return Record(RAW_MSGPACK, 0, 0, model_id.bytes, orjson.dumps(value), 0)


def test_a_level_model_upload_normalizes_to_a_keyed_record() -> None:
    mid = uuid.uuid4()
    [out], failed = split_msgpack(model_record(mid))  # raised KeyError: 'session_id'
    assert failed == []
    assert out.topic == TYPED_LEVEL_MODELS
    assert out.key == str(mid).encode()  # its own id (topics.py: "key: model id")
    row = orjson.loads(out.value)
    assert row["model_id"] == str(mid) and row["level_name"] == "Level_1"


@pytest.mark.parametrize("kind", list(KINDS.values()), ids=list(KINDS))
def test_every_kind_has_a_partition_key_from_its_own_columns(kind: RecordKind) -> None:
    # The normalizer writes every column of its kind; the key must come from those alone.
    row = {name: f"{name}-value" for name in kind.column_names}
    key = partition_key(kind, row)
    assert isinstance(key, bytes) and key
