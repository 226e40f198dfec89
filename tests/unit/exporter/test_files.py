"""File naming, hour partitioning and line encoding of the exporter (services/exporter/files.py)."""

from __future__ import annotations

import gzip
import uuid
from typing import Any

import orjson
import pytest

from forgeline.bus.port import Record
from forgeline.schemas.cells import format_millis
from forgeline.schemas.records import ERROR, KINDS, METRIC, REPORT, SPAN, TRAJECTORY, UPLOAD, RecordKind
from forgeline.schemas.typed import row_line, typed_record
from services.exporter.files import (
    BadRow,
    backfill_key,
    encode_file,
    encode_line,
    file_key,
    hour_of_line,
    kind_for,
    line_from_record,
    parse_name,
    read_lines,
    row_from_warehouse,
)

pytestmark = pytest.mark.unit

T = 1_763_895_481_123  # 2025-11-23 10:58:01.123 UTC


def _sample(kind_name: str) -> dict[str, Any]:
    """A typed row of ``kind_name`` with every column set, of the types the normalizer writes."""
    values: dict[str, Any] = {}
    for name, ctype in KINDS[kind_name].columns:
        values[name] = {
            "uuid": str(uuid.uuid4()).upper(),
            "str": f'{name} ü "q" \n "{name}":1',
            "uint32": 42,
            "uint64": 2**64 - 1,
            "float": 2,
            "nullable_float": 1.5,
            "nullable_int32": 7,
            "millis": T,
            "nullable_millis": T + 1,
            "str_array": ["a", 3],
            "float_array": [1, 2.5],
        }[ctype]
    return values


def _old(kind: RecordKind, doc: dict[str, Any], offset: int = 5) -> Record:
    """A typed record in the older format (no header, timestamps in ms)."""
    return Record(kind.topic, 0, offset, None, orjson.dumps(doc), 0)


def _new(kind: RecordKind, doc: dict[str, Any], offset: int = 5) -> Record:
    out = typed_record(kind, doc, b"k")
    return Record(out.topic, 0, offset, out.key, out.value, 0, out.headers)


def test_every_kind_has_a_millis_time_column() -> None:
    for name, kind in KINDS.items():
        assert dict(kind.columns)[kind.time_column] == "millis", name


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
def test_a_line_is_the_row_the_writer_inserts_in_either_format(kind_name: str) -> None:
    kind = KINDS[kind_name]
    doc = _sample(kind_name)
    hour, line = line_from_record(kind, _new(kind, doc))
    assert line == row_line(_new(kind, doc)) + b"\n" and line.count(b"\n") == 1
    assert line_from_record(kind, _old(kind, doc)) == (hour, line)  # the older format: the same bytes
    row = orjson.loads(line)
    assert list(row) == kind.column_names  # the table's columns in table order
    types = dict(kind.columns)
    for name, value in row.items():
        ctype = types[name]
        if ctype in ("millis", "nullable_millis"):
            assert value == doc[name] / 1000, name  # decimal epoch seconds
        elif ctype == "uuid":
            assert value == str(uuid.UUID(doc[name])), name  # canonical lower case, as ClickHouse prints it
        elif ctype in ("float", "nullable_float"):
            assert type(value) is float and value == float(doc[name]), name  # Float64 prints as a float
        elif ctype == "str_array":
            assert value == ["a", "3"], name
        else:
            assert value == doc[name], name
    assert hour == ("2025-11-23", "10")


def test_timestamps_outside_datetime64_make_no_row_as_in_the_writer() -> None:
    for millis in (-2_208_988_800_001, 10_413_792_000_000):
        with pytest.raises(BadRow):
            line_from_record(ERROR, _old(ERROR, _sample("error") | {"occurred_at": millis}))
        with pytest.raises(ValueError):
            typed_record(ERROR, _sample("error") | {"occurred_at": millis}, b"k")


def test_floats_stay_floats_and_nulls_stay_null() -> None:
    _, line = line_from_record(METRIC, _new(METRIC, _sample("metric") | {"value": 3, "duration_ms": None}))
    assert b'"value":3.0' in line and b'"duration_ms":null' in line
    assert line.endswith(b"}\n") and line.count(b"\n") == 1


def test_a_record_the_writer_would_refuse_is_a_bad_row() -> None:
    with pytest.raises(BadRow):
        line_from_record(ERROR, Record(ERROR.topic, 0, 0, None, b"not json", 0))
    with pytest.raises(BadRow):
        line_from_record(ERROR, _old(ERROR, _sample("error") | {"event_id": "nope"}))


def test_the_warehouse_rendering_maps_to_the_same_line() -> None:
    doc = _sample("trajectory")
    _, ours = line_from_record(TRAJECTORY, _new(TRAJECTORY, doc))
    # What ClickHouse's JSONEachRow prints for that row: integral floats without ".0", a
    # 64-bit integer possibly quoted, DateTime64 as text.
    rendered = {k: (int(v) if isinstance(v, float) and v.is_integer() else v) for k, v in orjson.loads(ours).items()}
    rendered["xs"], rendered["point_count"] = [1, 2.5], "42"
    for name in ("started_at", "ended_at", "received_at"):
        rendered[name] = format_millis(doc[name])
    assert encode_line(row_from_warehouse(TRAJECTORY, rendered)) == ours


def test_the_hour_is_the_utc_hour_of_the_time_column() -> None:
    _, line = line_from_record(SPAN, _new(SPAN, _sample("span") | {"occurred_at": T, "started_at": 0}))
    assert hour_of_line(SPAN, line) == ("2025-11-23", "10")
    report = _new(REPORT, _sample("report") | {"received_at": 86_400_000 - 1})
    assert line_from_record(REPORT, report)[0] == ("1970-01-01", "23")
    before_1970 = _new(REPORT, _sample("report") | {"received_at": -1})
    assert line_from_record(REPORT, before_1970)[0] == ("1969-12-31", "23")
    # The time column last in the line (uploads), and a text cell that spells its key.
    upload = _sample("upload") | {"filename": '"completed_at":0', "completed_at": T}
    assert UPLOAD.column_names[-1] == "completed_at"
    assert line_from_record(UPLOAD, _new(UPLOAD, upload))[0] == ("2025-11-23", "10")
    with pytest.raises(BadRow):
        hour_of_line(UPLOAD, b'{"filename":"x"}')


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
    lines = [line_from_record(ERROR, _new(ERROR, _sample("error")))[1] for _ in range(50)]
    first, again = encode_file(lines, compress=True), encode_file(list(lines), compress=True)
    assert first == again
    assert gzip.decompress(first) == encode_file(lines, compress=False) == b"".join(lines)
    assert read_lines(first) == read_lines(b"".join(lines)) == [orjson.loads(line) for line in lines]


def test_a_partial_file_does_not_read() -> None:
    data = b"".join(encode_line({"a": i}) for i in range(3))
    with pytest.raises(ValueError, match="partial"):
        read_lines(data[:-5])
