"""Typed record → row conversion (services/writer/steps.py)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from forgeline.bus.port import Record
from forgeline.processing.deadletter import InvalidMessage
from forgeline.schemas.records import ERROR, SPAN, TRANSACTION
from services.writer.steps import to_columns, typed_row

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


def row_of(doc: dict[str, Any], topic: str = ERROR.topic) -> dict[str, Any]:
    table, columns, row = typed_row(Record(topic, 0, 0, None, orjson.dumps(doc), 0))
    assert len(columns) == len(row)
    return dict(zip(columns, row, strict=True))


def test_error_row_has_every_column_in_table_order() -> None:
    table, columns, _ = typed_row(Record(ERROR.topic, 0, 0, None, orjson.dumps(error_doc()), 0))
    assert table == "errors"
    assert columns == ERROR.column_names


def test_cells_are_converted_to_their_column_types() -> None:
    row = row_of(error_doc())
    assert row["event_id"] == EVENT_ID  # validated, passed as text (clickhouse-connect parses it)
    assert row["occurred_at"] == 1_767_225_600_123  # epoch ms, written as DateTime64(3) ticks
    assert row["user_id"] == "42"  # a number sent for a string column becomes text
    assert row["release"] == ""  # absent string → empty, not None


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
    assert row_of(span, SPAN.topic)["ended_at"] is None


@pytest.mark.parametrize(
    "overrides",
    [
        {"event_id": "not-a-uuid"},
        {"occurred_at": 10**15},  # year ~33,000: outside DateTime64's range
        {"occurred_at": -(10**13)},
        {"legacy_id": "seven"},
    ],
)
def test_a_record_that_does_not_fit_is_invalid(overrides: dict[str, Any]) -> None:
    with pytest.raises(InvalidMessage):
        row_of(error_doc(**overrides))


def test_garbage_bytes_are_invalid() -> None:
    with pytest.raises(InvalidMessage):
        typed_row(Record(ERROR.topic, 0, 0, None, b"\xff not json", 0))


def test_columns_leave_out_exactly_the_documents_that_do_not_fit() -> None:
    docs = [error_doc(legacy_id=1), error_doc(occurred_at="soon"), error_doc(legacy_id=3)]
    columns, bad = to_columns(ERROR, docs)
    assert list(bad) == [1] and "occurred_at" in str(bad[1])
    by_name = dict(zip(ERROR.column_names, columns, strict=True))
    assert by_name["legacy_id"] == [1, 3]
    assert all(len(column) == 2 for column in columns)


def test_fast_and_slow_paths_give_the_same_cells() -> None:
    clean = error_doc()
    # Same values with other JSON types: the column takes the per-cell path.
    mixed = error_doc(legacy_id=7.0, occurred_at="1767225600123", environment=None)
    fast, _ = to_columns(ERROR, [clean])
    slow, _ = to_columns(ERROR, [mixed])
    expected = {name: column[0] for name, column in zip(ERROR.column_names, fast, strict=True)}
    got = {name: column[0] for name, column in zip(ERROR.column_names, slow, strict=True)}
    assert got == {**expected, "environment": ""}


def test_a_json_value_that_is_not_an_object_is_invalid() -> None:
    with pytest.raises(InvalidMessage):
        typed_row(Record(ERROR.topic, 0, 0, None, b"[1, 2]", 0))


def test_complete_and_partial_documents_transpose_alike() -> None:
    # Complete documents take the one-getter path; one missing key takes the per-cell path.
    complete = [{name: None for name in ERROR.column_names} | error_doc(legacy_id=n) for n in range(3)]
    partial = [dict(doc) for doc in complete]
    del partial[1]["fingerprint"]
    fast, _ = to_columns(ERROR, complete)
    slow, _ = to_columns(ERROR, partial)
    assert fast == slow
    assert dict(zip(ERROR.column_names, fast, strict=True))["legacy_id"] == [0, 1, 2]
    assert to_columns(ERROR, []) == ([[] for _ in ERROR.column_names], {})
