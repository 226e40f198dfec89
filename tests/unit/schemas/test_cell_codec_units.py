"""The one cell codec (forgeline.schemas.cells): per ColumnType, to the warehouse and back, and to
the line; the table declarations (forgeline.schemas.records) that drive it.

tests/integration/test_cell_codec_tables.py checks the same through chDB, and every declaration
against the table ClickHouse creates.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, get_args

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from forgeline.schemas import cells
from forgeline.schemas.records import (
    ERROR,
    KINDS,
    MILLIS_TYPES,
    PROCESSOR_TABLES,
    TABLES,
    ColumnType,
    RecordKind,
    TableSpec,
    partition_key_of,
)
from services.errors.steps import ErrorGroup
from services.monitors.steps import Monitor, StateChange
from services.normalizer.keys import partition_key
from services.spans.main import summary_row, tree_row
from services.spans.steps import Span, SpanNode, TraceSummary
from tests.fixtures.cell_values import VALUES

pytestmark = pytest.mark.unit


def test_every_column_type_has_values_here() -> None:
    assert set(VALUES) == set(get_args(ColumnType))


def _json_each_row(ctype: ColumnType, value: Any) -> Any:
    """How ClickHouse's JSONEachRow prints a stored cell: DateTime64 as text, 64-bit integers
    quoted (output_format_json_quote_64bit_integers), a Float64 holding 3.0 as 3."""
    if value is None:
        return None
    if ctype in MILLIS_TYPES:
        return cells.format_millis(value)
    if ctype in ("uint64", "int64"):
        return str(value)
    if ctype in ("float", "nullable_float"):
        return int(value) if value.is_integer() else value
    if ctype == "float_array":
        return [int(item) if item.is_integer() else item for item in value]
    return value


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(sorted(VALUES)).flatmap(lambda ctype: VALUES[ctype].map(lambda value: (ctype, value))))
def test_to_the_warehouse_and_back_is_the_same_value(case: tuple[ColumnType, Any]) -> None:
    ctype, value = case
    stored = cells.TO_WAREHOUSE[ctype](value)
    if ctype in MILLIS_TYPES and value is not None:
        assert isinstance(stored, datetime) and stored.utcoffset() is not None  # never the host's zone
    assert cells.FROM_WAREHOUSE[ctype](stored) == value
    # As a query reads it back: epoch ms (select_list), or JSONEachRow's rendering of the column.
    if ctype in MILLIS_TYPES:
        assert cells.FROM_WAREHOUSE[ctype](value) == value
    rendered = _json_each_row(ctype, value)
    assert cells.FROM_WAREHOUSE[ctype](rendered) == value
    # The line value of the warehouse's cell is the line value of the row value.
    assert cells.TO_LINE[ctype](cells.FROM_WAREHOUSE[ctype](rendered)) == cells.TO_LINE[ctype](value)


@given(VALUES["millis"])
def test_millis_to_datetime_is_exact_over_datetime64(millis: int) -> None:
    moment = cells.millis_to_datetime(millis)
    assert moment.microsecond % 1000 == 0 and cells.datetime_to_millis(moment) == millis


def test_a_naive_datetime_is_refused() -> None:
    with pytest.raises(ValueError):
        cells.warehouse_millis(datetime(2026, 1, 1))


def test_uuids_come_back_canonical() -> None:
    value = uuid.UUID("00000000-0000-0000-0000-00000000000A")
    assert cells.FROM_WAREHOUSE["uuid"](value) == "00000000-0000-0000-0000-00000000000a"


def _row(spec: TableSpec) -> st.SearchStrategy[tuple[Any, ...]]:
    return st.tuples(*(VALUES[ctype] for _, ctype in spec.columns))


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(sorted(TABLES)).flatmap(lambda table: _row(TABLES[table]).map(lambda row: (table, row))))
def test_rows_go_to_the_warehouse_and_back_by_their_declaration(case: tuple[str, tuple[Any, ...]]) -> None:
    spec = TABLES[case[0]]
    row = case[1]
    [stored] = cells.warehouse_rows(spec, [row])
    for (name, ctype), value, cell in zip(spec.columns, row, stored, strict=True):
        assert cell == cells.TO_WAREHOUSE[ctype](value), name
    # What the query of select_list gives back (every millis column as epoch ms): the row again.
    assert cells.rows_from_warehouse(spec, spec.column_names, [row]) == [dict(zip(spec.column_names, row, strict=True))]


def test_a_row_of_the_wrong_width_is_refused() -> None:
    with pytest.raises(ValueError, match="error_groups"):
        cells.warehouse_rows(PROCESSOR_TABLES["error_groups"], [("p", "g")])


def test_select_list_reads_every_millis_column_as_epoch_ms() -> None:
    spec = PROCESSOR_TABLES["monitor_states"]
    assert cells.select_list(spec, ["slug", "last_check_in_at"]) == (
        "slug, toUnixTimestamp64Milli(last_check_in_at) AS last_check_in_at"
    )
    assert cells.select_list(spec).count("toUnixTimestamp64Milli") == 3


def test_every_table_is_declared_with_a_millis_time_column_and_a_key() -> None:
    assert set(PROCESSOR_TABLES) == {
        "error_groups", "error_group_events", "monitor_states", "monitor_state_changes", "stream_clocks",
        "trace_summaries", "span_tree",
    }  # fmt: skip
    for spec in TABLES.values():
        types = dict(spec.columns)
        assert types[spec.time_column] == "millis", spec.table
        assert spec.key and set(spec.key) <= set(types), spec.table
    for kind in KINDS.values():
        assert TABLES[kind.table] == kind.spec
    with pytest.raises(ValueError, match="time column"):
        TableSpec("t", (("a", "str"),), "a", ("a",))
    with pytest.raises(ValueError, match="key"):
        TableSpec("t", (("a", "millis"),), "a", ("b",))


def _kind_rows() -> st.SearchStrategy[tuple[RecordKind, dict[str, Any]]]:
    return st.sampled_from(sorted(KINDS.values(), key=lambda k: k.name)).flatmap(
        lambda kind: st.fixed_dictionaries(
            {name: VALUES[ctype] if ctype != "str" else st.text(max_size=8) for name, ctype in kind.columns}
        ).map(lambda row: (kind, row))
    )


@settings(max_examples=300, deadline=None)
@given(_kind_rows())
def test_the_declared_partition_key_is_the_normalizers(case: tuple[RecordKind, dict[str, Any]]) -> None:
    kind, row = case
    if kind is ERROR:
        # Errors: the grouping fingerprint in place of the fingerprint column.
        from forgeline.grouping import group_fingerprint

        grouped = row | {"fingerprint": group_fingerprint(row["fingerprint"], row["message"], row["exception_class"])}
        assert partition_key(kind, row) == partition_key_of(kind, grouped)
    else:
        assert partition_key(kind, row) == partition_key_of(kind, row)


def _fits(spec: TableSpec, row: tuple[Any, ...]) -> None:
    """``row`` is one cell per declared column, each of its column's type."""
    assert len(row) == len(spec.columns), spec.table
    for (name, ctype), value in zip(spec.columns, row, strict=True):
        cells.TO_LINE[ctype](value)  # raises for a value the column does not take
        if ctype in ("str", "uuid"):
            assert isinstance(value, str), (spec.table, name)
        if ctype == "str_array":
            assert all(isinstance(item, str) for item in value), (spec.table, name)


def test_the_processors_rows_are_their_tables_declared_columns() -> None:
    group = ErrorGroup("p", "fp", organisation_id="o", first_seen_ms=1, last_seen_ms=2, status_changed_ms=3)
    group.releases, group.environments, group.recent_event_ids, group.regressed = {"1"}, {"prod"}, ["e"], True
    _fits(PROCESSOR_TABLES["error_groups"], group.row())
    stored = dict(zip(PROCESSOR_TABLES["error_groups"].column_names, group.row(), strict=True))
    assert ErrorGroup.from_row(stored).row() == group.row()
    event = ("p", group.group_id, "e", 5, "prod", "1", "error")
    _fits(PROCESSOR_TABLES["error_group_events"], event)

    monitor = Monitor("p", "prod", "slug", "o", "missed", 60, 30, 1_000, "ok", 5, 7, 3)
    _fits(PROCESSOR_TABLES["monitor_states"], monitor.row())
    change = StateChange(str(uuid.uuid4()), "p", "prod", "slug", "ok", "missed", 9, 10, "deadline", "")
    _fits(PROCESSOR_TABLES["monitor_state_changes"], change.row())

    span = Span("p", "prod", "t", "s", "", "e", "n", "server", "ok", "info", "api", 1, 3, 2, 2.0)
    _fits(PROCESSOR_TABLES["span_tree"], tree_row(SpanNode(span, 0, True, 0, 2.0), 1))
    summary = TraceSummary("p", "prod", "t", "s", "n", 1, 3, 2.0, 1, 0, 0, 1, ("api",))
    _fits(PROCESSOR_TABLES["trace_summaries"], summary_row(summary, 4))


def test_backfill_times_are_exact_to_the_millisecond() -> None:
    from services.exporter.backfill import hour_sql, parse_time

    # timestamp() * 1000 gives 2170228210094 here.
    assert parse_time("2038-10-09T09:10:10.095Z", "--from") == 2_170_228_210_095
    assert parse_time("2026-11-23T12:00:00+02:00", "--to") == parse_time("2026-11-23T10:00", "--to")
    sql = hour_sql(KINDS["trajectory"], "forgeline", 0, 3_600_000)
    assert "WHERE `started_at` >= " in sql and "ORDER BY `started_at`, `event_id`" in sql  # its time column
