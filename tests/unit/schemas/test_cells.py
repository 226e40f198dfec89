"""The one cell codec: the writer and the exporter convert a value through the same table."""

from __future__ import annotations

from typing import Any

import pytest

from forgeline.schemas import cells
from forgeline.schemas.records import KINDS

pytestmark = pytest.mark.unit

SAMPLES: list[Any] = [
    None, "text", 12, 1.5, "7", "x1", "00000000-0000-0000-0000-00000000000A", 1_700_000_000_123,
    -99_999_999_999_999, 99_999_999_999_999, ["a", 1], [1, "2.5"], [object()], {"k": 1},
]  # fmt: skip


def _outcome(convert: Any, value: Any) -> tuple[bool, Any]:
    try:
        return True, convert(value)
    except (TypeError, ValueError, OverflowError):
        return False, None


def test_both_ends_accept_and_refuse_the_same_values() -> None:
    assert set(cells.TO_WAREHOUSE) == set(cells.TO_NDJSON)
    column_types = {ctype for kind in KINDS.values() for _, ctype in kind.columns}
    assert column_types <= set(cells.TO_WAREHOUSE)
    for ctype in cells.TO_WAREHOUSE:
        for value in SAMPLES:
            stored, cell = _outcome(cells.TO_WAREHOUSE[ctype], value)
            written, line = _outcome(cells.TO_NDJSON[ctype], value)
            assert stored == written, (ctype, value)
            if stored and ctype.endswith("millis") and cell is not None:
                assert line == cells.format_millis(cell)  # the same instant, as ClickHouse prints it
            elif stored and not ctype.endswith("millis"):
                assert line == cell, (ctype, value)


def test_the_writer_and_the_exporter_use_the_one_codec() -> None:
    from services.exporter import files
    from services.writer import steps

    assert steps._CONVERTERS is cells.TO_WAREHOUSE
    assert files._CONVERT is cells.TO_NDJSON
    assert cells.uuid_text("00000000-0000-0000-0000-00000000000A") == "00000000-0000-0000-0000-00000000000a"
    assert cells.millis_to_datetime(1500).isoformat() == "1970-01-01T00:00:01.500000+00:00"
