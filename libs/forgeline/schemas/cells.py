"""One codec per column type: a row's value ↔ its line value ↔ its warehouse value.

A row value is what the code computes with (timestamps as epoch-millisecond ints, UUIDs and
text as str). Per ``ColumnType`` (``forgeline.schemas.records``):

- ``TO_LINE[ctype](value)`` is the JSON value a column takes in a typed record (format 2, see
  ``forgeline.schemas.typed``): exactly what ClickHouse reads into that column, so the writer
  inserts the line as it is and the exporter writes it as it is. A value that does not fit its
  column raises (ValueError, TypeError or OverflowError) instead of reaching a table that would
  wrap or default it.
- ``TO_WAREHOUSE[ctype](value)`` is the Python value clickhouse-connect inserts into that
  column (timestamps as aware UTC datetimes); ``warehouse_rows`` converts whole rows of a
  ``TableSpec``.
- ``FROM_WAREHOUSE[ctype](cell)`` is the row value again, from what a query gives back:
  clickhouse-connect's value of the column as ``select_list`` reads it (timestamps through
  ``toUnixTimestamp64Milli``: a naive datetime's zone would be the host's), or ClickHouse's
  ``JSONEachRow`` rendering of the column itself (DateTime64 as text, 64-bit integers maybe
  quoted, integral floats without a fraction).
"""

from __future__ import annotations

import functools
import math
import re
import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from forgeline.schemas.records import INT_RANGES, MILLIS_TYPES, ColumnType, TableSpec, datetime64_ms

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS = timedelta(milliseconds=1)
_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def millis_to_datetime(millis: int | float) -> datetime:
    """Epoch milliseconds → an aware UTC datetime (what DateTime64(3, 'UTC') columns take).

    Exact: ``fromtimestamp(ms / 1000)`` is a microsecond off for some times after 2242, which
    clickhouse-connect truncates to the millisecond below.
    """
    return _EPOCH + timedelta(milliseconds=int(millis))


def datetime_to_millis(moment: datetime) -> int:
    """An aware datetime → epoch milliseconds, exactly; ValueError for a naive one (zone unknown)."""
    if moment.tzinfo is None:
        raise ValueError(f"{moment!r} has no time zone")
    return (moment - _EPOCH) // _ONE_MS


@functools.lru_cache(maxsize=8192)
def _second_text(seconds: int) -> str:
    # Telemetry timestamps cluster in time: the formatted second is nearly always cached.
    return f"{_EPOCH + timedelta(seconds=seconds):%Y-%m-%d %H:%M:%S}"


def format_millis(millis: int) -> str:
    """Epoch milliseconds → ClickHouse's DateTime64(3) text, exactly (integer arithmetic).

    ValueError outside DateTime64's range (1900–2299).
    """
    seconds, milli = divmod(datetime64_ms(millis), 1000)
    return f"{_second_text(seconds)}.{milli:03d}"


def parse_datetime64(text: str) -> int:
    """ClickHouse's DateTime64(3, 'UTC') text (``2026-11-23 10:58:01.123``) → epoch milliseconds."""
    whole, _, fraction = text.partition(".")
    moment = datetime.strptime(whole, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1000 + int((fraction + "000")[:3])


def millis_to_seconds(value: Any) -> float:
    """Epoch milliseconds → decimal epoch seconds, the JSON number a DateTime64(3) column reads.

    ``ms / 1000`` is the nearest double to the decimal, and its shortest representation (what
    orjson prints) has at most three decimals, so ClickHouse reads back exactly ``ms``.
    """
    return datetime64_ms(value) / 1000


def seconds_to_millis(value: Any) -> int:
    """A line's decimal epoch seconds → epoch milliseconds (exact for every DateTime64(3) value)."""
    return int(round(value * 1000))


def text(value: Any) -> str:
    return value if type(value) is str else ("" if value is None else str(value))


def uuid_text(value: Any) -> str:
    """The canonical (lower-case, hyphenated) form; ValueError if it is no UUID."""
    if type(value) is str and _CANONICAL_UUID.fullmatch(value):
        return value
    return str(uuid.UUID(str(value)))


def finite(value: Any) -> float:
    """A float a Float64 column holds; JSON has no NaN or infinity (orjson would write null)."""
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{value!r} is not a finite number")
    return number


def bounded(low: int, high: int) -> Callable[[Any], int]:
    """An integer within the column's range (ClickHouse would wrap one outside it)."""

    def convert(value: Any) -> int:
        number = int(value)
        if not low <= number <= high:
            raise ValueError(f"{number} is outside the column's range {low}..{high}")
        return number

    return convert


def nullable(convert: Callable[[Any], Any]) -> Callable[[Any], Any]:
    return lambda value: None if value is None else convert(value)


def _str_array(value: Any) -> list[str]:
    return [str(item) for item in value or ()]


def _float_array(value: Any) -> list[float]:
    return [finite(item) for item in value or ()]


def _uint8(value: Any) -> int:
    return bounded(*INT_RANGES["uint8"])(int(value))  # a flag may be a bool


TO_LINE: dict[ColumnType, Callable[[Any], Any]] = {
    "str": text,
    "uuid": uuid_text,
    "uint32": bounded(*INT_RANGES["uint32"]),
    "uint64": bounded(*INT_RANGES["uint64"]),
    "float": finite,
    "millis": millis_to_seconds,
    "str_array": _str_array,
    "float_array": _float_array,
    "nullable_float": nullable(finite),
    "nullable_int32": nullable(bounded(*INT_RANGES["nullable_int32"])),
    "nullable_millis": nullable(millis_to_seconds),
    "int64": bounded(*INT_RANGES["int64"]),
    "uint8": _uint8,
}


# --- To the warehouse and back ---


def _as_is(value: Any) -> Any:
    return value


def _floats(cell: Any) -> list[float]:
    return [float(item) for item in cell]


def warehouse_millis(cell: Any) -> int:
    """A DateTime64(3) cell as a query gives it back → epoch ms: an int (``toUnixTimestamp64Milli``),
    ClickHouse's text (``JSONEachRow``) or an aware datetime."""
    if isinstance(cell, datetime):
        return datetime64_ms(datetime_to_millis(cell))
    if isinstance(cell, str) and not cell.lstrip("-").isdigit():
        return datetime64_ms(parse_datetime64(cell))
    return datetime64_ms(cell)


TO_WAREHOUSE: dict[ColumnType, Callable[[Any], Any]] = {
    "str": _as_is,
    "uuid": _as_is,
    "uint32": _as_is,
    "uint64": _as_is,
    "int64": _as_is,
    "uint8": _as_is,
    "float": _as_is,
    "millis": millis_to_datetime,
    "str_array": _as_is,
    "float_array": _as_is,
    "nullable_float": _as_is,
    "nullable_int32": _as_is,
    "nullable_millis": nullable(millis_to_datetime),
}

FROM_WAREHOUSE: dict[ColumnType, Callable[[Any], Any]] = {
    "str": text,
    "uuid": uuid_text,
    "uint32": int,
    "uint64": int,  # JSONEachRow may quote a 64-bit integer
    "int64": int,
    "uint8": int,
    "float": float,  # JSONEachRow prints a Float64 holding 3.0 as 3
    "millis": warehouse_millis,
    "str_array": _str_array,
    "float_array": _floats,
    "nullable_float": nullable(float),
    "nullable_int32": nullable(int),
    "nullable_millis": nullable(warehouse_millis),
}


def warehouse_rows(spec: TableSpec, rows: Iterable[Sequence[Any]]) -> list[tuple[Any, ...]]:
    """Rows of ``spec`` (every column, in table order, as row values) → what the warehouse inserts."""
    converted = [
        (i, TO_WAREHOUSE[ctype]) for i, (_, ctype) in enumerate(spec.columns) if TO_WAREHOUSE[ctype] is not _as_is
    ]
    out = []
    for row in rows:
        cells = list(row)
        if len(cells) != len(spec.columns):
            raise ValueError(f"{spec.table}: a row of {len(cells)} cells for {len(spec.columns)} columns")
        for i, convert in converted:
            cells[i] = convert(cells[i])
        out.append(tuple(cells))
    return out


def select_list(spec: TableSpec, names: Sequence[str] | None = None) -> str:
    """The SELECT list reading ``names`` (default: every column) of ``spec`` as ``FROM_WAREHOUSE`` takes them."""
    types = dict(spec.columns)
    return ", ".join(
        f"toUnixTimestamp64Milli({name}) AS {name}" if types[name] in MILLIS_TYPES else name
        for name in (names or spec.column_names)
    )


def rows_from_warehouse(spec: TableSpec, names: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[dict[str, Any]]:
    """Query rows of ``names`` (read through ``select_list``) → dicts of row values."""
    types = dict(spec.columns)
    convert = [(name, FROM_WAREHOUSE[types[name]]) for name in names]
    return [{name: f(cell) for (name, f), cell in zip(convert, row, strict=True)} for row in rows]
