"""How a typed record is encoded on the typed topics: one place, read by every consumer."""

from __future__ import annotations

from typing import Any

import orjson

from forgeline.bus.port import OutgoingRecord
from forgeline.schemas.records import RecordKind


def typed_record(kind: RecordKind, row: dict[str, Any], key: bytes) -> OutgoingRecord:
    """The bus record of one typed row of ``kind`` (a JSON object keyed by its table's columns)."""
    return OutgoingRecord(kind.topic, orjson.dumps(row), key=key)
