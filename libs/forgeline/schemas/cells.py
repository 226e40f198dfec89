"""One codec per column type: a typed record's value → its warehouse cell, or its NDJSON value.

The writer inserts ``TO_WAREHOUSE[ctype](value)`` (its slow path: a column whose values do
not already fit); the exporter writes ``TO_NDJSON[ctype](value)``, the same value as
ClickHouse renders it in ``JSONEachRow``. Both take the same input and accept and refuse the
same values, so a record the writer dead-letters makes no NDJSON line either.
"""

from __future__ import annotations

import functools
import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from forgeline.schemas.records import ColumnType, datetime64_ms

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def millis_to_datetime(millis: int | float) -> datetime:
    """Epoch milliseconds → an aware UTC datetime (what DateTime64(3, 'UTC') columns take)."""
    return datetime.fromtimestamp(int(millis) / 1000, UTC)


@functools.lru_cache(maxsize=8192)
def _second_text(seconds: int) -> str:
    # Telemetry timestamps cluster in time: the formatted second is nearly always cached.
    return f"{_EPOCH + timedelta(seconds=seconds):%Y-%m-%d %H:%M:%S}"


def format_millis(millis: int) -> str:
    """Epoch milliseconds → ClickHouse's DateTime64(3) text, exactly (integer arithmetic).

    ValueError outside DateTime64's range (1900–2299), which the writer refuses too.
    """
    seconds, milli = divmod(datetime64_ms(millis), 1000)
    return f"{_second_text(seconds)}.{milli:03d}"


def text(value: Any) -> str:
    return value if type(value) is str else ("" if value is None else str(value))


def uuid_text(value: Any) -> str:
    """The canonical (lower-case, hyphenated) form; ValueError if it is no UUID."""
    if type(value) is str and _CANONICAL_UUID.fullmatch(value):
        return value
    return str(uuid.UUID(str(value)))


def nullable(convert: Callable[[Any], Any]) -> Callable[[Any], Any]:
    return lambda value: None if value is None else convert(value)


def _str_array(value: Any) -> list[str]:
    return [str(item) for item in value or ()]


def _float_array(value: Any) -> list[float]:
    return [float(item) for item in value or ()]


def _codec(millis: Callable[[Any], Any]) -> dict[ColumnType, Callable[[Any], Any]]:
    """The converters of every column type; only the time columns differ between the two ends."""
    return {
        "str": text,
        "uuid": uuid_text,
        "int": int,
        "float": float,
        "millis": millis,
        "str_array": _str_array,
        "float_array": _float_array,
        "nullable_float": nullable(float),
        "nullable_int": nullable(int),
        "nullable_millis": nullable(millis),
    }


# DateTime64(3) columns take epoch milliseconds as plain ints (range-checked, never wrapped).
TO_WAREHOUSE: dict[ColumnType, Callable[[Any], Any]] = _codec(datetime64_ms)
TO_NDJSON: dict[ColumnType, Callable[[Any], Any]] = _codec(format_millis)
