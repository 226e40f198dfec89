"""Typed record → table row. Pure: the same record always gives the same row."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import orjson

from forgeline.bus.port import Record
from forgeline.bus.topics import dead_letter_topic
from forgeline.ids import derived_uuid
from forgeline.processing.deadletter import InvalidMessage
from forgeline.schemas.records import KINDS_BY_TOPIC, ColumnType

DEAD_LETTER_COLUMNS = [
    "dead_letter_id",
    "consumer_group",
    "source_topic",
    "source_partition",
    "source_offset",
    "reason",
    "failed_at",
    "payload",
]


def _millis(value: Any) -> datetime:
    return datetime.fromtimestamp(int(value) / 1000, UTC)


def _cell(value: Any, kind: ColumnType) -> Any:
    if kind == "str":
        return "" if value is None else str(value)
    if kind == "uuid":
        return uuid.UUID(str(value))
    if kind == "int":
        return int(value)
    if kind == "float":
        return float(value)
    if kind == "millis":
        return _millis(value)
    if kind == "str_array":
        return [str(item) for item in value or ()]
    if kind == "float_array":
        return [float(item) for item in value or ()]
    if value is None:
        return None
    if kind == "nullable_float":
        return float(value)
    if kind == "nullable_int":
        return int(value)
    return _millis(value)  # nullable_millis


def typed_row(record: Record) -> tuple[str, list[str], tuple[Any, ...]]:
    """(table, columns, row) for a typed record; InvalidMessage if it does not fit."""
    kind = KINDS_BY_TOPIC[record.topic]
    try:
        doc = orjson.loads(record.value)
        row = tuple(_cell(doc.get(name), ctype) for name, ctype in kind.columns)
    except (orjson.JSONDecodeError, TypeError, ValueError, OverflowError, AttributeError) as err:
        raise InvalidMessage("bad_typed_record", repr(err)) from err
    return kind.table, kind.column_names, row


def dead_letter_row(record: Record) -> tuple[Any, ...]:
    """A ``dlq.*`` record → one dead_letters row; never fails (the payload is kept as text)."""
    group = record.topic.removeprefix("dlq.")
    source_topic = (record.header("source_topic") or b"").decode("utf-8", "replace")
    source_partition = int(record.header("source_partition") or 0)
    source_offset = int(record.header("source_offset") or 0)
    reason = (record.header("reason") or b"").decode("utf-8", "replace")
    detail = (record.header("detail") or b"").decode("utf-8", "replace")
    failed_at = int(record.header("failed_at_ms") or record.timestamp_ms)
    # One source record can fail several ways (the notifier: one delivery per target).
    key = record.header("dead_letter_key")
    extra = (key.decode("utf-8", "replace"),) if key else ()
    return (
        derived_uuid("dead_letter", group, source_topic, str(source_partition), str(source_offset), *extra),
        group,
        source_topic,
        source_partition,
        source_offset,
        f"{reason}: {detail}" if detail else reason,
        _millis(failed_at),
        record.value.decode("utf-8", "replace"),
    )


def is_dead_letter_topic(topic: str) -> bool:
    return topic.startswith(dead_letter_topic(""))
