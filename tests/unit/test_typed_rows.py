"""Typed records as JSONEachRow lines (forgeline.schemas.typed): both formats, every kind.

For random rows of every kind: the format-2 record is its table's line (every column, in
column order, time cells as decimal seconds); an old format-1 record of the same row makes
the same line on its way into the writer; and ``decode_typed`` gives every consumer the same
dict for both (time cells as epoch-ms ints).
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from forgeline.bus.port import Record
from forgeline.bus.topics import TICK_HEADER
from forgeline.processing.deadletter import InvalidMessage
from forgeline.schemas.records import KINDS, RecordKind
from forgeline.schemas.typed import ROW_FORMAT, ROW_HEADER, decode_typed, is_row_line, row_line, typed_record
from tests.fixtures.cell_values import VALUES

pytestmark = pytest.mark.unit


def rows(kind: RecordKind) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({name: VALUES[ctype] for name, ctype in kind.columns})


def kinds_and_rows() -> st.SearchStrategy[tuple[RecordKind, dict[str, Any]]]:
    return st.sampled_from(sorted(KINDS.values(), key=lambda k: k.name)).flatmap(
        lambda kind: rows(kind).map(lambda row: (kind, row))
    )


def record(out: Any, headers: tuple[tuple[str, bytes], ...] | None = None) -> Record:
    return Record(out.topic, 0, 0, out.key, out.value, 0, out.headers if headers is None else headers)


@settings(max_examples=300, deadline=None)
@given(kinds_and_rows())
def test_both_formats_make_one_line_and_decode_alike(case: tuple[RecordKind, dict[str, Any]]) -> None:
    kind, row = case
    new = typed_record(kind, row, b"k")
    assert new.topic == kind.topic and (ROW_HEADER, ROW_FORMAT) in new.headers
    line = orjson.loads(new.value)
    assert list(line) == kind.column_names and b"\n" not in new.value
    types = dict(kind.columns)
    for name, value in line.items():
        if types[name].endswith("millis") and value is not None:
            assert type(value) is float and round(value * 1000) == row[name]  # decimal seconds

    old = record(new._replace(value=orjson.dumps(row)), headers=())  # a log written before format 2
    assert row_line(old) == new.value
    assert decode_typed(record(new)) == decode_typed(old) == {**line, **_millis(kind, row)}


def _millis(kind: RecordKind, row: dict[str, Any]) -> dict[str, Any]:
    return {name: row[name] for name, ctype in kind.columns if ctype.endswith("millis")}


@settings(max_examples=100, deadline=None)
@given(kinds_and_rows())
def test_a_line_that_lost_its_header_decodes_the_same(case: tuple[RecordKind, dict[str, Any]]) -> None:
    # A copy of a record without its headers (a dead letter's payload): the JSON types tell.
    kind, row = case
    new = typed_record(kind, row, b"k")
    bare = record(new, headers=())
    assert not is_row_line(bare)
    assert decode_typed(bare) == decode_typed(record(new)) and row_line(bare) == new.value


def test_only_a_marked_single_object_is_taken_as_a_line() -> None:
    kind = KINDS["log"]
    marked = ((ROW_HEADER, ROW_FORMAT),)
    ok = Record(kind.topic, 0, 0, None, b'{"a":1}', 0, marked)
    assert is_row_line(ok)
    assert is_row_line(ok._replace(headers=((TICK_HEADER, b"1"), *marked)))
    for value in (b'{"a":1}\n{"a":2}', b"[1]", b"", b'{"a":1} '):
        assert not is_row_line(ok._replace(value=value))
    assert not is_row_line(ok._replace(headers=((ROW_HEADER, b"3"),)))


@pytest.mark.parametrize("value", [b"not json", b"[]", b"7", b'"s"'])
def test_what_is_no_object_is_invalid(value: bytes) -> None:
    with pytest.raises(InvalidMessage, match="bad_typed_record"):
        decode_typed(Record(KINDS["log"].topic, 0, 0, None, value, 0))
