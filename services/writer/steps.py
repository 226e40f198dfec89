"""Typed records → table columns. Pure: the same records always give the same columns."""

from __future__ import annotations

import operator
import re
from collections.abc import Sequence
from typing import Any

import orjson

from forgeline.bus.port import Record
from forgeline.bus.topics import dead_letter_topic
from forgeline.ids import derived_uuid
from forgeline.processing.deadletter import InvalidMessage
from forgeline.schemas.cells import TO_WAREHOUSE, millis_to_datetime
from forgeline.schemas.records import (
    DATETIME64_MAX_MS,
    DATETIME64_MIN_MS,
    KINDS_BY_TOPIC,
    ColumnType,
    RecordKind,
)

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


# DateTime64(3) columns take epoch milliseconds as plain ints (clickhouse-connect writes them
# as ticks), which skips a datetime per cell; out-of-range values are refused, not wrapped.
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_NONE = type(None)
# One cell at a time: the slow path, taken only for a column whose fast check failed.
_CONVERTERS = TO_WAREHOUSE


def _in_range(values: list[Any]) -> bool:
    present = [v for v in values if v is not None]
    return not present or (DATETIME64_MIN_MS <= min(present) and max(present) <= DATETIME64_MAX_MS)


def _already_fits(ctype: ColumnType, values: list[Any]) -> bool:
    """Whether a whole column can be inserted as it is: a few C-level passes instead of a
    Python call per cell (the writer's hot path; see docs/performance.md)."""
    types = set(map(type, values))
    if ctype == "str":
        return types <= {str}
    if ctype == "uuid":
        return types <= {str} and all(map(_UUID.fullmatch, values))
    if ctype == "int":
        return types <= {int}
    if ctype == "float":
        return types <= {float, int}
    if ctype == "millis":
        return types <= {int} and _in_range(values)
    if ctype == "nullable_millis":
        return types <= {int, _NONE} and _in_range(values)
    if ctype == "nullable_float":
        return types <= {float, int, _NONE}
    if ctype == "nullable_int":
        return types <= {int, _NONE}
    return False  # arrays: converted per cell


def decode_typed(record: Record) -> dict[str, Any]:
    """A typed record's JSON object; InvalidMessage if it is not one."""
    try:
        doc = orjson.loads(record.value)
    except orjson.JSONDecodeError as err:
        raise InvalidMessage("bad_typed_record", repr(err)) from err
    if not isinstance(doc, dict):
        raise InvalidMessage("bad_typed_record", f"expected a JSON object, got {type(doc).__name__}")
    return doc


def to_columns(kind: RecordKind, docs: Sequence[dict[str, Any]]) -> tuple[list[list[Any]], dict[int, InvalidMessage]]:
    """Typed documents → one list per column of ``kind``, in column order.

    Returns the columns without the documents that do not fit, and those documents' indexes
    with the reason, so the caller can dead-letter exactly them.
    """
    columns: list[list[Any]] = []
    bad: dict[int, InvalidMessage] = {}
    for (name, ctype), values in zip(kind.columns, _transpose(kind, docs), strict=True):
        if not _already_fits(ctype, values):
            convert = _CONVERTERS[ctype]
            for i, value in enumerate(values):
                try:
                    values[i] = convert(value)
                except Exception as err:  # noqa: BLE001 - whatever a cell raises, only its record fails
                    bad.setdefault(i, InvalidMessage("bad_typed_record", f"{name}: {err!r}"))
                    values[i] = None
        columns.append(values)
    if bad:
        keep = [i for i in range(len(docs)) if i not in bad]
        columns = [[column[i] for i in keep] for column in columns]
    return columns, bad


def _transpose(kind: RecordKind, docs: Sequence[dict[str, Any]]) -> list[list[Any]]:
    """One list per column of ``kind``; a missing key gives None."""
    if not docs:
        return [[] for _ in kind.columns]
    try:
        # All keys present (what the normalizer writes): one C-level getter per document and
        # one zip, instead of a Python-level .get per cell.
        rows = list(map(operator.itemgetter(*kind.column_names), docs))
    except KeyError:
        return [[doc.get(name) for doc in docs] for name, _ in kind.columns]
    if len(kind.columns) == 1:  # itemgetter of one key returns the value, not a 1-tuple
        return [rows]
    return [list(column) for column in zip(*rows, strict=True)]


def typed_row(record: Record) -> tuple[str, list[str], tuple[Any, ...]]:
    """(table, columns, row) for one typed record; InvalidMessage if it does not fit."""
    kind = KINDS_BY_TOPIC[record.topic]
    columns, bad = to_columns(kind, [decode_typed(record)])
    if bad:
        raise bad[0]
    return kind.table, kind.column_names, tuple(column[0] for column in columns)


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
        millis_to_datetime(failed_at),
        record.value.decode("utf-8", "replace"),
    )


def is_dead_letter_topic(topic: str) -> bool:
    return topic.startswith(dead_letter_topic(""))
