"""File naming, hour partitioning and line encoding of the exporter (services/exporter/files.py)."""

from __future__ import annotations

import gzip
import uuid
from typing import Any

import orjson
import pytest

from forgeline.bus.port import Record
from forgeline.processing.deadletter import InvalidMessage
from forgeline.schemas.cells import format_millis
from forgeline.schemas.records import ERROR, KINDS, METRIC, REPORT, SPAN, TRAJECTORY
from services.exporter.files import (
    TIME_COLUMNS,
    BadRow,
    backfill_key,
    encode_file,
    encode_line,
    file_key,
    hour_of,
    kind_for,
    parse_name,
    read_lines,
    row_from_record,
    row_from_warehouse,
)
from services.writer.steps import typed_row

pytestmark = pytest.mark.unit

T = 1_763_895_481_123  # 2025-11-23 10:58:01.123 UTC


def _sample(kind_name: str) -> dict[str, Any]:
    """A typed record of ``kind_name`` with every column set, of the type the normalizer writes."""
    values: dict[str, Any] = {}
    for name, ctype in KINDS[kind_name].columns:
        values[name] = {
            "uuid": str(uuid.uuid4()).upper(),
            "str": f'{name} ü "q"',
            "int": 42,
            "float": 2,
            "nullable_float": 1.5,
            "nullable_int": 7,
            "millis": T,
            "nullable_millis": T + 1,
            "str_array": ["a", 3],
            "float_array": [1, 2.5],
        }[ctype]
    return values


def test_every_kind_has_a_millis_time_column() -> None:
    assert set(TIME_COLUMNS) == set(KINDS)
    for name, column in TIME_COLUMNS.items():
        assert dict(KINDS[name].columns)[column] == "millis", name


@pytest.mark.parametrize(
    ("millis", "text"),
    [
        (0, "1970-01-01 00:00:00.000"),
        (T, "2025-11-23 10:58:01.123"),
        (T + 877, "2025-11-23 10:58:02.000"),
        (4_102_444_799_999, "2099-12-31 23:59:59.999"),
    ],
)
def test_timestamps_are_clickhouse_datetime64_text(millis: int, text: str) -> None:
    assert format_millis(millis) == text


@pytest.mark.parametrize("kind_name", sorted(KINDS))
def test_a_row_holds_what_the_writer_inserts(kind_name: str) -> None:
    kind = KINDS[kind_name]
    doc = _sample(kind_name)
    record = Record(kind.topic, 0, 5, None, orjson.dumps(doc), 0)
    _, columns, inserted = typed_row(record)
    row = row_from_record(kind, record.value)
    assert list(row) == columns  # same names, same order
    types = dict(kind.columns)
    for name, ours, theirs in zip(columns, row.values(), inserted, strict=True):
        ctype = types[name]
        if theirs is None:
            assert ours is None, name
        elif ctype in ("millis", "nullable_millis"):
            assert ours == format_millis(theirs), name  # the writer inserts epoch ms
        elif ctype == "uuid":
            assert ours == str(uuid.UUID(str(theirs))), name  # canonical lower case, as ClickHouse prints it
        elif ctype in ("float", "nullable_float"):
            assert type(ours) is float and ours == float(theirs), name  # Float64 prints as a float
        else:
            assert ours == theirs and type(ours) is type(theirs), name


def test_timestamps_outside_datetime64_make_no_row_as_in_the_writer() -> None:
    for millis in (-2_208_988_800_001, 10_413_792_000_000):
        with pytest.raises(BadRow):
            row_from_record(ERROR, orjson.dumps(_sample("error") | {"occurred_at": millis}))
        with pytest.raises(InvalidMessage):
            typed_row(Record(ERROR.topic, 0, 0, None, orjson.dumps(_sample("error") | {"occurred_at": millis}), 0))


def test_floats_stay_floats_and_nulls_stay_null() -> None:
    doc = _sample("metric") | {"value": 3, "duration_ms": None}
    row = row_from_record(METRIC, orjson.dumps(doc))
    line = encode_line(row)
    assert b'"value":3.0' in line and b'"duration_ms":null' in line
    assert line.endswith(b"}\n") and line.count(b"\n") == 1


def test_a_record_the_writer_would_refuse_is_a_bad_row() -> None:
    with pytest.raises(BadRow):
        row_from_record(ERROR, b"not json")
    with pytest.raises(BadRow):
        row_from_record(ERROR, orjson.dumps(_sample("error") | {"event_id": "nope"}))


def test_the_warehouse_rendering_maps_to_the_same_line() -> None:
    doc = _sample("trajectory")
    ours = row_from_record(TRAJECTORY, orjson.dumps(doc))
    # What ClickHouse's JSONEachRow prints for that row: integral floats without ".0",
    # a 64-bit integer possibly quoted.
    rendered = {k: (int(v) if isinstance(v, float) and v.is_integer() else v) for k, v in ours.items()}
    rendered["xs"], rendered["point_count"] = [1, 2.5], "42"
    assert encode_line(row_from_warehouse(TRAJECTORY, rendered)) == encode_line(ours)


def test_the_hour_is_the_utc_hour_of_the_time_column() -> None:
    row = row_from_record(SPAN, orjson.dumps(_sample("span") | {"occurred_at": T, "started_at": 0}))
    assert hour_of(SPAN, row) == ("2025-11-23", "10")
    report = row_from_record(REPORT, orjson.dumps(_sample("report") | {"received_at": 86_400_000 - 1}))
    assert hour_of(REPORT, report) == ("1970-01-01", "23")


def test_file_keys_name_table_hour_partition_and_range() -> None:
    key = file_key(ERROR, "2025-11-23", "09", 3, 150, 299, compress=False)
    assert key == "errors/date=2025-11-23/hour=09/3-150-299.ndjson"
    gz = file_key(SPAN, "2025-11-23", "00", 0, 0, 0, compress=True)
    assert gz == "spans/date=2025-11-23/hour=00/0-0-0.ndjson.gz"
    name = parse_name(key)
    assert name is not None and (name.partition, name.first, name.last, name.compressed) == (3, 150, 299, False)
    gz_name = parse_name(gz)
    assert gz_name is not None and gz_name.compressed
    with pytest.raises(ValueError):
        file_key(ERROR, "2025-11-23", "09", 0, 10, 9, compress=False)


@pytest.mark.parametrize(
    "key",
    [
        "errors/date=2025-11-23/hour=09/backfill-1-2.ndjson",
        "errors/date=2025-11-23/hour=09/3-150.ndjson",
        "errors/date=2025-11-23/hour=09/3-150-299.json",
        "errors/date=2025-11-23/hour=09/.3-150-299.ndjson.abc.part",
    ],
)
def test_other_names_are_not_exporter_files(key: str) -> None:
    assert parse_name(key) is None


def test_backfill_keys_are_named_by_their_range() -> None:
    key = backfill_key(ERROR, "2025-11-23", "09", 10, 20, False)
    assert key == "errors/date=2025-11-23/hour=09/backfill-10-20.ndjson"


def test_kinds_by_name_or_table() -> None:
    assert kind_for("error") is ERROR and kind_for("errors") is ERROR
    with pytest.raises(ValueError, match="unknown kind 'nope'; choose one of: builds"):
        kind_for("nope")


def test_gzip_files_are_the_same_bytes_every_time() -> None:
    lines = [encode_line(row_from_record(ERROR, orjson.dumps(_sample("error")))) for _ in range(50)]
    first, again = encode_file(lines, compress=True), encode_file(list(lines), compress=True)
    assert first == again
    assert gzip.decompress(first) == encode_file(lines, compress=False) == b"".join(lines)
    assert read_lines(first) == read_lines(b"".join(lines)) == [orjson.loads(line) for line in lines]


def test_a_partial_file_does_not_read() -> None:
    data = b"".join(encode_line({"a": i}) for i in range(3))
    with pytest.raises(ValueError, match="partial"):
        read_lines(data[:-5])
