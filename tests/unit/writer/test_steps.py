"""Typed record → the line the writer inserts (services/writer/steps.py, forgeline.schemas.typed)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from forgeline.bus.port import Record
from forgeline.processing.deadletter import InvalidMessage
from forgeline.schemas.records import ERROR, SPAN, TRANSACTION
from forgeline.schemas.typed import row_line, typed_record
from services.writer.steps import typed_row

pytestmark = pytest.mark.unit

EVENT_ID = "0b5f3c9e-1d2a-4c8e-9f00-1234567890ab"


def error_doc(**overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "event_id": EVENT_ID,
        "legacy_id": 7,
        "organisation_id": "org",
        "project_id": "p",
        "environment": "production",
        "occurred_at": 1_767_225_600_123,
        "received_at": 1_767_225_600_456,
        "level": "error",
        "message": "boom",
        "user_id": 42,
    }
    doc.update(overrides)
    return doc


def old_record(doc: dict[str, Any], topic: str = ERROR.topic) -> Record:
    """A typed record as logs written before format 2 hold it: no header, timestamps in ms."""
    return Record(topic, 0, 0, None, orjson.dumps(doc), 0)


def row_of(doc: dict[str, Any], topic: str = ERROR.topic) -> dict[str, Any]:
    table, columns, row = typed_row(old_record(doc, topic))
    assert len(columns) == len(row)
    return dict(zip(columns, row, strict=True))


def test_error_row_has_every_column_in_table_order() -> None:
    table, columns, _ = typed_row(old_record(error_doc()))
    assert table == "errors"
    assert columns == ERROR.column_names
    assert list(orjson.loads(row_line(old_record(error_doc())))) == ERROR.column_names


def test_cells_are_converted_to_their_column_types() -> None:
    row = row_of(error_doc(event_id=EVENT_ID.upper()))
    assert row["event_id"] == EVENT_ID  # canonical text, as ClickHouse prints it
    assert row["occurred_at"] == 1_767_225_600.123  # decimal epoch seconds: what DateTime64 reads from JSON
    assert row["user_id"] == "42"  # a number sent for a string column becomes text
    assert row["release"] == ""  # absent string → empty, not null (the column is not Nullable)


def test_nullable_columns_keep_none() -> None:
    transaction = {**error_doc(), "transaction_name": "GET /", "duration_ms": None, "status_code": None}
    row = row_of(transaction, TRANSACTION.topic)
    assert row["duration_ms"] is None and row["status_code"] is None
    span = {
        **error_doc(),
        "trace_id": "t",
        "span_id": "s",
        "started_at": 1_767_225_600_000,
        "ended_at": None,
        "duration_ms": 5,
    }
    row = row_of(span, SPAN.topic)
    assert row["ended_at"] is None and row["duration_ms"] == 5.0


@pytest.mark.parametrize(
    "overrides",
    [
        {"event_id": "not-a-uuid"},
        {"occurred_at": 10**15},  # year ~33,000: outside DateTime64's range
        {"occurred_at": -(10**13)},
        {"occurred_at": None},
        {"legacy_id": "seven"},
        {"legacy_id": -1},  # UInt64: ClickHouse would refuse or wrap it
    ],
)
def test_a_record_that_does_not_fit_is_invalid(overrides: dict[str, Any]) -> None:
    with pytest.raises(InvalidMessage):
        row_of(error_doc(**overrides))
    with pytest.raises(ValueError):
        typed_record(ERROR, error_doc(**overrides), b"k")  # refused where the row is made, too


def test_a_row_the_table_cannot_hold_makes_no_record() -> None:
    with pytest.raises(ValueError, match="legacy_id"):
        typed_record(ERROR, error_doc(legacy_id=2**64), b"k")
    with pytest.raises(ValueError, match="duration_ms"):
        typed_record(TRANSACTION, {**error_doc(), "duration_ms": float("nan")}, b"k")  # JSON would say null


@pytest.mark.parametrize("status_code", [2**31, -(2**31) - 1, 1e20])
def test_an_int_outside_its_column_is_refused_not_wrapped(status_code: Any) -> None:
    transaction = {**error_doc(), "transaction_name": "GET /", "status_code": status_code}
    with pytest.raises(InvalidMessage, match="status_code"):
        row_of(transaction, TRANSACTION.topic)


@pytest.mark.parametrize("value", [b"\xff not json", b"[1, 2]", b""])
def test_bytes_that_are_no_object_are_invalid(value: bytes) -> None:
    with pytest.raises(InvalidMessage):
        typed_row(Record(ERROR.topic, 0, 0, None, value, 0))


def test_a_format_2_record_is_inserted_as_it_is() -> None:
    out = typed_record(ERROR, error_doc(), b"k")
    record = Record(out.topic, 0, 0, out.key, out.value, 0, out.headers)
    assert row_line(record) is record.value


def test_the_old_format_gives_the_line_the_new_one_carries() -> None:
    new = typed_record(ERROR, error_doc(), b"k")
    assert row_line(old_record(error_doc())) == new.value
    # A format-2 record replayed from a dead-letter topic has lost its header: the same line.
    assert row_line(Record(new.topic, 0, 0, None, new.value, 0)) == new.value


def test_a_marked_value_that_is_not_one_line_is_checked() -> None:
    # Two lines in one record would insert two rows: such a value is decoded, and refused.
    headers = typed_record(ERROR, error_doc(), b"k").headers
    two = orjson.dumps(error_doc()) + b"\n" + orjson.dumps(error_doc())
    with pytest.raises(InvalidMessage):
        row_line(Record(ERROR.topic, 0, 0, None, two, 0, headers))
