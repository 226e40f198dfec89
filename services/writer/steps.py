"""Typed records → the lines the writer inserts; dead letters → dead_letters rows. Pure."""

from __future__ import annotations

from typing import Any

import orjson

from forgeline.bus.port import Record
from forgeline.bus.topics import dead_letter_topic
from forgeline.ids import derived_uuid
from forgeline.schemas.records import DEAD_LETTERS, KINDS_BY_TOPIC
from forgeline.schemas.typed import row_line

DEAD_LETTER_COLUMNS = DEAD_LETTERS.column_names


def typed_row(record: Record) -> tuple[str, list[str], tuple[Any, ...]]:
    """(table, columns, row) for one typed record, the row as its JSONEachRow line holds it;
    InvalidMessage if it makes no row."""
    kind = KINDS_BY_TOPIC[record.topic]
    return kind.table, kind.column_names, tuple(orjson.loads(row_line(record)).values())


def dead_letter_row(record: Record) -> tuple[Any, ...]:
    """A ``dlq.*`` record → one dead_letters row (row values: ``failed_at`` in epoch ms, converted
    by ``cells.warehouse_rows`` on insert); never fails (the payload is kept as text)."""
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
        failed_at,
        record.value.decode("utf-8", "replace"),
    )


def is_dead_letter_topic(topic: str) -> bool:
    return topic.startswith(dead_letter_topic(""))
