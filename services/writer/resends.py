"""A resent event whose time defaulted to its receive time becomes the row already stored.

``forgeline.schemas.resends`` says why: the sorting key holds ``occurred_at``, which defaulted
to the receive time, and a resend is received later. Before a table's lines are inserted, the
lines marked ``AT_RECEIPT_HEADERS`` are looked up by id in that table (within the project,
and back ``window_ms`` from their time, which bounds the read to the recent part of the
sorting key); a found row's sorting-key time and ``received_at`` replace the line's, so the
insert is a copy of the stored row and the table collapses it. Two copies in one batch take
the first one's times.

Why the writer: the typed topics are keyed by the row's content (``normalizer/keys.py``), so
every copy of an event reaches the same partition, whose one owner writes its batches in
order. A copy therefore finds its first either stored or earlier in its own batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from forgeline.schemas.cells import millis_to_seconds, rows_from_warehouse, seconds_to_millis, select_list, uuid_text
from forgeline.schemas.records import RecordKind
from forgeline.schemas.resends import NARROWING_COLUMNS, RECEIVED_COLUMN, SORT_TIME_COLUMNS
from forgeline.warehouse.port import Warehouse

# Ids per lookup query: bounds the statement's size (one query per flush of the default 5000).
LOOKUP_CHUNK = 5000


@dataclass(frozen=True, slots=True)
class _Marked:
    index: int  # in the table's lines
    row: dict[str, Any]
    project_id: str
    event_id: str
    narrowing: str  # the sorting-key column after project_id (NARROWING_COLUMNS)
    at_ms: int  # the line's sorting-key time


def _lookup_sql(database: str, kind: RecordKind) -> str:
    column, narrowing = SORT_TIME_COLUMNS[kind], NARROWING_COLUMNS[kind]
    return (
        # The select list names its cells after their columns: WHERE qualifies the table's own.
        f"SELECT {select_list(kind.spec, ('event_id', column, RECEIVED_COLUMN))} FROM {database}.{kind.table} AS t "
        f"WHERE t.project_id = {{project:String}} AND t.{narrowing} IN {{narrowing:Array(String)}} "
        "AND t.event_id IN {ids:Array(UUID)} "
        f"AND t.{column} BETWEEN fromUnixTimestamp64Milli({{low:Int64}}, 'UTC') "
        f"AND fromUnixTimestamp64Milli({{high:Int64}}, 'UTC')"
    )


def _stored_times(
    warehouse: Warehouse, kind: RecordKind, marked: list[_Marked], window_ms: int
) -> dict[tuple[str, str], tuple[int, int]]:
    """(project, id) → (sorting-key time, received_at) in ms, of the rows already stored; the
    earliest when a table holds more than one (from before this was done)."""
    sql = _lookup_sql(warehouse.database, kind)
    names = ("event_id", SORT_TIME_COLUMNS[kind], RECEIVED_COLUMN)
    by_project: dict[str, list[_Marked]] = {}
    for item in marked:
        by_project.setdefault(item.project_id, []).append(item)
    stored: dict[tuple[str, str], tuple[int, int]] = {}
    for project, items in by_project.items():
        for start in range(0, len(items), LOOKUP_CHUNK):
            chunk = items[start : start + LOOKUP_CHUNK]
            parameters = {
                "project": project,
                "narrowing": sorted({item.narrowing for item in chunk}),
                "ids": sorted({item.event_id for item in chunk}),
                "low": min(item.at_ms for item in chunk) - window_ms,
                "high": max(item.at_ms for item in chunk),
            }
            for row in rows_from_warehouse(kind.spec, names, warehouse.query_rows(sql, parameters)):
                key = (project, row["event_id"])
                times = (row[names[1]], row[RECEIVED_COLUMN])
                if key not in stored or times < stored[key]:
                    stored[key] = times
    return stored


def adopt_first_times(
    warehouse: Warehouse, kind: RecordKind, lines: list[bytes], marked_at: list[int], window_ms: int
) -> tuple[list[bytes], int]:
    """(``lines`` with every marked line (indexes ``marked_at``) given the times of the first
    copy of its event — the stored row's, else the first copy's in ``lines`` —, how many lines
    changed). Lines that do not parse are left as they are (the insert then refuses them, and
    they are dead-lettered)."""
    column = SORT_TIME_COLUMNS.get(kind)
    if column is None or not marked_at:
        return lines, 0
    marked: list[_Marked] = []
    for index in marked_at:
        try:
            row = orjson.loads(lines[index])
            event_id = uuid_text(row["event_id"])
            project, narrowing = str(row["project_id"]), str(row[NARROWING_COLUMNS[kind]])
            item = _Marked(index, row, project, event_id, narrowing, seconds_to_millis(row[column]))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, OverflowError):
            continue  # not a row the table takes: the insert refuses it, and it is dead-lettered
        marked.append(item)
    if not marked:
        return lines, 0
    first = _stored_times(warehouse, kind, marked, window_ms)
    out = list(lines)
    changed = 0
    for item in marked:
        own = (item.at_ms, seconds_to_millis(item.row[RECEIVED_COLUMN]))
        times = first.setdefault((item.project_id, item.event_id), own)
        if times != own:
            item.row[column] = millis_to_seconds(times[0])
            item.row[RECEIVED_COLUMN] = millis_to_seconds(times[1])
            out[item.index] = orjson.dumps(item.row)
            changed += 1
    return out, changed
