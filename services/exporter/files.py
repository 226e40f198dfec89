"""NDJSON files of the exporter: lines, hours, names, bytes. Pure: same input, same bytes.

A line is a typed record's row as its ``JSONEachRow`` line (``forgeline.schemas.typed``),
written as it is: the table's columns in table order, UUIDs as canonical strings,
``DateTime64(3, 'UTC')`` as decimal epoch seconds (``1764567616.123``), Nullable as ``null``,
arrays as arrays, Float64 columns as JSON floats. ClickHouse (``clickhouse local``, chDB)
reads a file back with the table's structure into the same values as the table; a record in
the older typed format (timestamps in ms) is re-encoded into the same line the writer inserts.

Key: ``<table>/date=YYYY-MM-DD/hour=HH/<partition>-<first>-<last>.ndjson[.gz]``, where the
hour is the UTC hour of the kind's time column and ``first``/``last`` are the offset range
of the flush that wrote the file (every row of it lies in that range; the ranges of one
partition never overlap). The range is known from the first data record of the flush, so
a replay after a crash can find what was written and rewrite exactly the same files.
"""

from __future__ import annotations

import functools
import gzip
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from forgeline.bus.port import Record
from forgeline.processing.deadletter import InvalidMessage
from forgeline.schemas.cells import FROM_WAREHOUSE, TO_LINE
from forgeline.schemas.records import KINDS, RecordKind
from forgeline.schemas.typed import row_line

SUFFIX = ".ndjson"
GZIP_SUFFIX = ".ndjson.gz"
CONTENT_TYPE = "application/x-ndjson"
GZIP_CONTENT_TYPE = "application/gzip"
_NAME = re.compile(r"^(?P<partition>\d+)-(?P<first>\d+)-(?P<last>\d+)(?P<suffix>\.ndjson(?:\.gz)?)$")


class BadRow(ValueError):
    """A typed record that does not make a row (the writer dead-letters the same record)."""


def kind_for(name: str) -> RecordKind:
    """A kind by its name (``error``) or its table (``errors``); ValueError names the choices."""
    for kind in KINDS.values():
        if name in (kind.name, kind.table):
            return kind
    choices = ", ".join(sorted(k.table for k in KINDS.values()))
    raise ValueError(f"unknown kind {name!r}; choose one of: {choices}")


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# A row's hour is the hour of its kind's time column (``RecordKind.time_column``: when the thing
# happened, or arrived for kinds whose only time is their arrival); `forgeline export
# --from/--to` filters on it too. A time cell of a line: the first match is the key (inside a
# JSON string every quote is escaped, and ``context``-like columns are strings), its number runs
# to the next , or }.
_TIME_CELLS: dict[str, re.Pattern[bytes]] = {
    name: re.compile(b'"' + kind.time_column.encode() + rb'":(-?[0-9][0-9.eE+-]*)') for name, kind in KINDS.items()
}


def line_from_record(kind: RecordKind, record: Record) -> tuple[tuple[str, str], bytes]:
    """A typed record's hour and NDJSON line; BadRow when the writer could not insert it either."""
    try:
        line = row_line(record)
    except InvalidMessage as err:
        raise BadRow(err.detail) from err
    return hour_of_line(kind, line), line + b"\n"


@functools.lru_cache(maxsize=4096)
def _hour_text(hour: int) -> tuple[str, str]:
    moment = _EPOCH + timedelta(hours=hour)
    return f"{moment:%Y-%m-%d}", f"{moment:%H}"


def hour_of_line(kind: RecordKind, line: bytes) -> tuple[str, str]:
    """(``YYYY-MM-DD``, ``HH``) of the line's time column, in UTC; BadRow without one."""
    match = _TIME_CELLS[kind.name].search(line)
    if match is None:
        raise BadRow(f"no {kind.time_column} in the line")
    return _hour_text(int(float(match[1]) // 3600))


def row_from_warehouse(kind: RecordKind, doc: Mapping[str, Any]) -> dict[str, Any]:
    """A ``JSONEachRow`` row from the warehouse → the same row the exporter writes for it.

    ClickHouse prints a Float64 holding 3.0 as 3, may quote 64-bit integers, and prints
    DateTime64 as text: each cell goes back to its row value, then to its line value.
    """
    return {name: TO_LINE[ctype](FROM_WAREHOUSE[ctype](doc[name])) for name, ctype in kind.columns}


def encode_line(row: Mapping[str, Any]) -> bytes:
    return orjson.dumps(row, option=orjson.OPT_APPEND_NEWLINE)


def encode_file(lines: Iterable[bytes], compress: bool) -> bytes:
    """The file's bytes; gzip with mtime 0 and no name, so the same lines give the same bytes."""
    data = b"".join(lines)
    return gzip.compress(data, compresslevel=6, mtime=0) if compress else data


def hour_prefix(kind: RecordKind, date: str, hour: str) -> str:
    return f"{kind.table}/date={date}/hour={hour}/"


def file_key(kind: RecordKind, date: str, hour: str, partition: int, first: int, last: int, compress: bool) -> str:
    if not 0 <= first <= last:
        raise ValueError(f"bad offset range {first}-{last}")
    suffix = GZIP_SUFFIX if compress else SUFFIX
    return f"{hour_prefix(kind, date, hour)}{partition}-{first}-{last}{suffix}"


@dataclass(frozen=True, slots=True)
class FileName:
    partition: int
    first: int
    last: int
    compressed: bool


def parse_name(key: str) -> FileName | None:
    """The offsets in a file key (None for anything else, e.g. a backfill file)."""
    match = _NAME.match(key.rsplit("/", 1)[-1])
    if match is None:
        return None
    return FileName(int(match["partition"]), int(match["first"]), int(match["last"]), match["suffix"] == GZIP_SUFFIX)


def backfill_key(kind: RecordKind, date: str, hour: str, start_ms: int, end_ms: int, compress: bool) -> str:
    """A backfill has no offsets: its range names it, so running it again rewrites the same file."""
    suffix = GZIP_SUFFIX if compress else SUFFIX
    return f"{hour_prefix(kind, date, hour)}backfill-{start_ms}-{end_ms}{suffix}"


def read_lines(data: bytes) -> list[dict[str, Any]]:
    """Rows of a file (gzip or not), for tests and tools; ValueError on a partial line."""
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    if data and not data.endswith(b"\n"):
        raise ValueError("file does not end with a newline (partial write)")
    return [orjson.loads(line) for line in data.splitlines() if line]
