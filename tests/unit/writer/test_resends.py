"""A resent event whose time defaulted to its receipt takes the first copy's times."""

from __future__ import annotations

import pathlib
import re
import uuid
from collections.abc import Sequence
from typing import Any

import orjson
import pytest

from forgeline.schemas.records import DEPLOYMENT, ERROR, KINDS
from forgeline.schemas.resends import NARROWING_COLUMNS, SORT_TIME_COLUMNS, at_receipt
from forgeline.schemas.typed import AT_RECEIPT_HEADERS, ROW_HEADERS, typed_record
from services.writer.resends import adopt_first_times

pytestmark = pytest.mark.unit

SQL_DIR = "libs/forgeline/warehouse/tables"


class StoredRows:
    """Answers the writer's lookup from rows (project, id, time ms, received ms)."""

    database = "forgeline"

    def __init__(self, rows: Sequence[tuple[str, str, int, int]]) -> None:
        self.rows = rows
        self.queries: list[dict[str, Any]] = []

    def query_rows(self, sql: str, parameters: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        assert parameters is not None and "forgeline.errors" in sql
        self.queries.append(parameters)
        return [
            (event_id, at, received)
            for project, event_id, at, received in self.rows
            if project == parameters["project"]
            and "production" in parameters["narrowing"]
            and event_id in parameters["ids"]
            and parameters["low"] <= at <= parameters["high"]
        ]


def _error(event_id: str, received_ms: int, occurred_ms: int | None = None, project: str = "p1") -> dict[str, Any]:
    return {
        "event_id": event_id, "legacy_id": 1, "organisation_id": "o", "project_id": project,
        "environment": "production", "occurred_at": occurred_ms if occurred_ms is not None else received_ms,
        "received_at": received_ms, "level": "error", "message": "m", "fingerprint": "f",
        "exception_class": "", "release": "", "trace_id": "", "request_id": "", "session_id": "",
        "user_id": "", "context": "{}",
    }  # fmt: skip


def _line(row: dict[str, Any]) -> bytes:
    return typed_record(ERROR, row, b"k").value


def _times(line: bytes) -> tuple[float, float]:
    doc = orjson.loads(line)
    return doc["occurred_at"], doc["received_at"]


def test_a_row_is_marked_only_when_its_sorting_time_is_its_receipt() -> None:
    eid = str(uuid.uuid4())
    assert typed_record(ERROR, _error(eid, 1_000), b"k").headers == AT_RECEIPT_HEADERS
    assert typed_record(ERROR, _error(eid, 1_000, occurred_ms=900), b"k").headers == ROW_HEADERS
    assert not at_receipt(DEPLOYMENT, {"deployed_at": 5, "received_at": 5})  # sorted by its id alone


def test_a_resend_takes_the_stored_rows_times() -> None:
    eid = str(uuid.uuid4())
    stored = StoredRows([("p1", eid, 1_000_000, 1_000_000)])
    lines, changed = adopt_first_times(stored, ERROR, [_line(_error(eid, 1_060_000))], [0], window_ms=3_600_000)
    assert changed == 1
    assert _times(lines[0]) == (1_000.0, 1_000.0)
    assert stored.queries[0]["low"] == 1_060_000 - 3_600_000 and stored.queries[0]["high"] == 1_060_000


def test_only_the_marked_lines_change_and_every_other_byte_stays() -> None:
    eid, other = str(uuid.uuid4()), str(uuid.uuid4())
    stored = StoredRows([("p1", eid, 1_000_000, 1_000_000), ("p1", other, 1_000_000, 1_000_000)])
    original = [_line(_error(other, 1_050_000)), _line(_error(eid, 1_050_000))]
    lines, changed = adopt_first_times(stored, ERROR, original, [1], window_ms=3_600_000)
    assert changed == 1 and lines[0] == original[0]
    assert orjson.loads(lines[1]) | {"occurred_at": 0, "received_at": 0} == orjson.loads(original[1]) | {
        "occurred_at": 0,
        "received_at": 0,
    }
    assert list(orjson.loads(lines[1])) == list(orjson.loads(original[1]))  # column order kept


def test_two_copies_in_one_batch_take_the_first_ones_times() -> None:
    eid = str(uuid.uuid4())
    lines, changed = adopt_first_times(
        StoredRows([]), ERROR, [_line(_error(eid, 2_000)), _line(_error(eid, 5_000))], [0, 1], window_ms=60_000
    )
    assert changed == 1 and lines[0] == lines[1]


def test_another_projects_row_of_the_same_id_is_not_taken() -> None:
    eid = str(uuid.uuid4())
    stored = StoredRows([("p2", eid, 1_000, 1_000)])
    line = _line(_error(eid, 5_000))
    assert adopt_first_times(stored, ERROR, [line], [0], window_ms=60_000) == ([line], 0)


def test_a_copy_older_than_the_window_stays_its_own_row() -> None:
    eid = str(uuid.uuid4())
    stored = StoredRows([("p1", eid, 1_000, 1_000)])
    line = _line(_error(eid, 200_000))
    assert adopt_first_times(stored, ERROR, [line], [0], window_ms=60_000) == ([line], 0)


def test_a_line_that_does_not_parse_is_left_for_the_insert_to_refuse() -> None:
    bad_id = orjson.dumps(orjson.loads(_line(_error(str(uuid.uuid4()), 5_000))) | {"event_id": "not-a-uuid"})
    lines = [b"{not json", bad_id, _line(_error(str(uuid.uuid4()), 5_000))]
    stored = StoredRows([])
    assert adopt_first_times(stored, ERROR, lines, [0, 1, 2], window_ms=60_000) == (lines, 0)
    assert [len(query["ids"]) for query in stored.queries] == [1]  # the bad id is never sent to the warehouse


def _sorting_keys() -> dict[str, list[str]]:
    sql = "\n".join(p.read_text() for p in sorted(pathlib.Path(SQL_DIR).glob("*.sql")))
    tables = re.findall(r"CREATE TABLE IF NOT EXISTS \{db\}\.(\w+) \((.*?)ORDER BY \(([^)]*)\)", sql, re.S)
    return {name: [c.strip() for c in key.split(",")] for name, _, key in tables}


@pytest.mark.parametrize("kind", list(SORT_TIME_COLUMNS), ids=lambda kind: kind.name)
def test_each_listed_time_column_is_in_its_tables_sorting_key(kind: Any) -> None:
    key = _sorting_keys()[kind.table]
    assert SORT_TIME_COLUMNS[kind] in key and "event_id" in key and key[:2] == ["project_id", NARROWING_COLUMNS[kind]]


# Sorted by a time, but the time is required of the client: a resend carries the same one.
TIME_REQUIRED = {"funnel_step", "gameplay_event", "trajectory"}


def test_every_kind_sorted_by_a_time_is_listed_or_requires_its_time() -> None:
    keys = _sorting_keys()
    for kind in KINDS.values():
        times = {name for name, ctype in kind.columns if ctype == "millis"} - {"received_at"}
        if times & set(keys[kind.table]):
            assert kind in SORT_TIME_COLUMNS or kind.name in TIME_REQUIRED, kind.name
