"""One codec per column type: a typed row's value → its value in the row's ``JSONEachRow`` line.

``TO_LINE[ctype](value)`` is the JSON value a column takes in a typed record (format 2, see
``forgeline.schemas.typed``): exactly what ClickHouse reads into that column, so the writer
inserts the line as it is and the exporter writes it as it is. A value that does not fit its
column raises (ValueError, TypeError or OverflowError) instead of reaching a table that would
wrap or default it.
"""

from __future__ import annotations

import functools
import math
import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from forgeline.schemas.records import INT_RANGES, ColumnType, datetime64_ms

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
}
