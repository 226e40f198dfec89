"""The one cell codec: a typed row's value → its value in the row's JSONEachRow line."""

from __future__ import annotations

from typing import Any, get_args

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from forgeline.schemas import cells
from forgeline.schemas.records import DATETIME64_MAX_MS, DATETIME64_MIN_MS, INT_RANGES, TABLES, ColumnType

pytestmark = pytest.mark.unit

SAMPLES: list[Any] = [
    None, "text", 12, 1.5, "7", "x1", "00000000-0000-0000-0000-00000000000A", 1_700_000_000_123,
    -99_999_999_999_999, 99_999_999_999_999, -1, 2**32, 2**64, ["a", 1], [1, "2.5"], [object()], {"k": 1},
    float("nan"), float("inf"),
]  # fmt: skip


def _outcome(convert: Any, value: Any) -> tuple[bool, Any]:
    try:
        return True, convert(value)
    except (TypeError, ValueError, OverflowError):
        return False, None


def test_every_column_type_has_a_converter() -> None:
    declared = {ctype for spec in TABLES.values() for _, ctype in spec.columns}
    assert declared == set(get_args(ColumnType))  # no type left unused
    for codec in (cells.TO_LINE, cells.TO_WAREHOUSE, cells.FROM_WAREHOUSE):
        assert set(codec) == declared


def test_every_accepted_value_is_json_the_column_reads() -> None:
    for ctype, convert in cells.TO_LINE.items():
        for value in SAMPLES:
            ok, cell = _outcome(convert, value)
            if not ok:
                continue
            assert orjson.loads(orjson.dumps(cell)) == cell, (ctype, value)  # no NaN turned into null
            if ctype in INT_RANGES and cell is not None:
                low, high = INT_RANGES[ctype]
                assert low <= cell <= high, (ctype, value)
            if cell is None:
                assert ctype.startswith("nullable_"), (ctype, value)  # only Nullable columns take null


@pytest.mark.parametrize("ctype", ["uint32", "uint64", "nullable_int32", "int64", "uint8"])
def test_integers_outside_their_column_are_refused(ctype: str) -> None:
    low, high = INT_RANGES[ctype]  # type: ignore[index]
    convert = cells.TO_LINE[ctype]  # type: ignore[index]
    assert convert(low) == low and convert(high) == high
    for value in (low - 1, high + 1):
        with pytest.raises(ValueError):
            convert(value)


@given(st.integers(DATETIME64_MIN_MS, DATETIME64_MAX_MS))
def test_millis_travel_as_seconds_and_come_back_exactly(millis: int) -> None:
    text = orjson.dumps(cells.millis_to_seconds(millis))
    whole, _, fraction = text.decode().partition(".")
    assert whole.lstrip("-").isdigit() and 1 <= len(fraction) <= 3  # what ClickHouse reads exactly
    assert cells.seconds_to_millis(orjson.loads(text)) == millis
    assert cells.parse_datetime64(cells.format_millis(millis)) == millis


@pytest.mark.parametrize("millis", [DATETIME64_MIN_MS - 1, DATETIME64_MAX_MS + 1])
def test_millis_outside_datetime64_are_refused(millis: int) -> None:
    with pytest.raises(ValueError):
        cells.millis_to_seconds(millis)


def test_canonical_text() -> None:
    assert cells.uuid_text("00000000-0000-0000-0000-00000000000A") == "00000000-0000-0000-0000-00000000000a"
    assert cells.millis_to_datetime(1500).isoformat() == "1970-01-01T00:00:01.500000+00:00"
    assert cells.format_millis(-1) == "1969-12-31 23:59:59.999"
