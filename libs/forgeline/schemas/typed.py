"""How a typed record is encoded on the typed topics: one place, read by every consumer.

Format 2 (header ``forgeline-row: 2``, written by ``typed_record``): the value is one row of
the kind's table as a ``JSONEachRow`` line — every column, in column order, each value as
the column holds it: timestamps as decimal epoch seconds (``1764567616.123``: ClickHouse
reads a JSON integer into DateTime64 as seconds, so milliseconds cannot travel as integers),
UUIDs canonical, integers within their column's range. The writer inserts the line as it is
and the exporter writes it as it is; a cell that does not fit is refused here (ValueError),
so it is dead-lettered where the row is made instead of stored wrapped.

Format 1 (no header: logs written before format 2): the same object with timestamps as
epoch-millisecond integers and values as the producer had them. It still replays: the writer
and the exporter re-encode it as format 2, and ``decode_typed`` reads both.

``decode_typed`` gives every Python consumer the same dict for both formats (timestamps as
epoch-millisecond ints). It tells them apart by the JSON type of the time cells, not by the
header: format 1 only ever held integers there, format 2 only floats, and a copy of a record
without its headers (a dead letter's payload) must still decode right. The header is what
lets the writer and the exporter take a value as a line without parsing it.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from forgeline.bus.port import OutgoingRecord, Record
from forgeline.processing.deadletter import InvalidMessage
from forgeline.schemas.cells import TO_LINE, seconds_to_millis, text
from forgeline.schemas.records import KINDS, KINDS_BY_TOPIC, RecordKind
from forgeline.schemas.resends import AT_RECEIPT, AT_RECEIPT_HEADER, at_receipt

ROW_HEADER = "forgeline-row"
ROW_FORMAT = b"2"
ROW_HEADERS = ((ROW_HEADER, ROW_FORMAT),)  # what typed_record sets: consumers may compare to it
# ... or this, for a row whose sorting-key time is its receive time (forgeline.schemas.resends).
AT_RECEIPT_HEADERS = (*ROW_HEADERS, (AT_RECEIPT_HEADER, AT_RECEIPT))


@dataclass(frozen=True, slots=True)
class _Plan:
    names: tuple[str, ...]
    converted: tuple[tuple[str, Callable[[Any], Any]], ...]  # every column but String: one call per cell
    texts: tuple[str, ...]  # String columns: checked together, converted only if one is not a str
    text_cells: Callable[[dict[str, Any]], tuple[Any, ...]]
    millis: tuple[str, ...]


def _getter(names: tuple[str, ...]) -> Callable[[dict[str, Any]], tuple[Any, ...]]:
    """The values of ``names``, always as a tuple (itemgetter of one name returns the value)."""
    if len(names) == 1:
        return lambda row: (row[names[0]],)
    return operator.itemgetter(*names)


def _make_plan(kind: RecordKind) -> _Plan:
    texts = tuple(name for name, ctype in kind.columns if ctype == "str")
    return _Plan(
        names=tuple(kind.column_names),
        converted=tuple((name, TO_LINE[ctype]) for name, ctype in kind.columns if ctype != "str"),
        texts=texts,
        text_cells=_getter(texts),
        millis=tuple(name for name, ctype in kind.columns if ctype in ("millis", "nullable_millis")),
    )


# By table name: hashing a RecordKind (all its columns) per row would cost more than the lookup.
_PLANS: dict[str, _Plan] = {kind.table: _make_plan(kind) for kind in KINDS.values()}
_STR_ONLY = {str}


def _plan(kind: RecordKind) -> _Plan:
    plan = _PLANS.get(kind.table)
    return plan if plan is not None else _make_plan(kind)


def encode_row(kind: RecordKind, row: dict[str, Any]) -> bytes:
    """``row`` (timestamps as epoch ms) as its table's JSONEachRow line; ValueError names a cell
    that does not fit its column. Keys the table lacks are left out; a missing key is null."""
    plan = _plan(kind)
    out = dict(zip(plan.names, map(row.get, plan.names), strict=True))
    name = ""
    try:
        for name, convert in plan.converted:
            out[name] = convert(out[name])
    except (TypeError, ValueError, OverflowError) as err:
        raise ValueError(f"{kind.table}.{name}: {err}") from err
    if set(map(type, plan.text_cells(out))) != _STR_ONLY:
        for name in plan.texts:
            out[name] = text(out[name])
    return orjson.dumps(out)


def typed_record(kind: RecordKind, row: dict[str, Any], key: bytes) -> OutgoingRecord:
    """The bus record of one typed row of ``kind`` (format 2); ValueError if a cell does not fit."""
    headers = AT_RECEIPT_HEADERS if at_receipt(kind, row) else ROW_HEADERS
    return OutgoingRecord(kind.topic, encode_row(kind, row), key=key, headers=headers)


def is_row_line(record: Record | OutgoingRecord) -> bool:
    """Whether the value is already its table's JSONEachRow line (format 2, one line)."""
    value = record.value
    return (
        (ROW_HEADER, ROW_FORMAT) in record.headers and value[:1] == b"{" and value[-1:] == b"}" and b"\n" not in value
    )


def decode_typed(record: Record | OutgoingRecord) -> dict[str, Any]:
    """A typed record (either format) as a dict with timestamps as epoch-ms ints; InvalidMessage
    if it is not a JSON object."""
    try:
        doc = orjson.loads(record.value)
    except orjson.JSONDecodeError as err:
        raise InvalidMessage("bad_typed_record", repr(err)) from err
    if not isinstance(doc, dict):
        raise InvalidMessage("bad_typed_record", f"expected a JSON object, got {type(doc).__name__}")
    kind = KINDS_BY_TOPIC.get(record.topic)
    if kind is not None:
        for name in _plan(kind).millis:
            value = doc.get(name)
            if type(value) is float:  # format 2: decimal seconds
                doc[name] = seconds_to_millis(value)
    return doc


def row_line(record: Record | OutgoingRecord) -> bytes:
    """The record's row as its table's JSONEachRow line: a format-2 value as it is, a format-1
    one re-encoded; InvalidMessage if it makes no row (what the writer dead-letters)."""
    if is_row_line(record):
        return record.value
    kind = KINDS_BY_TOPIC[record.topic]
    doc = decode_typed(record)
    try:
        return encode_row(kind, doc)
    except ValueError as err:
        raise InvalidMessage("bad_typed_record", str(err)) from err
