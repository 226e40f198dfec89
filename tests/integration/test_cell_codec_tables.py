"""The table declarations and the cell codec against chDB itself.

Every ``TableSpec`` (the typed kinds' tables and the stateful processors') is the table the
migrations create: the same columns in the same order with the ColumnType's ClickHouse type,
only DEFAULT columns left undeclared, the same sorting key. And a row of every ColumnType goes
to the warehouse and back unchanged, read as the processors read it (``select_list``) and as
the exporter's backfill reads it (``JSONEachRow``), whose line values are the row's own.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, get_args

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from forgeline.schemas import cells
from forgeline.schemas.records import DATETIME64_MAX_MS, DATETIME64_MIN_MS, TABLES, ColumnType, TableSpec
from forgeline.warehouse.client import ClickHouseWarehouse
from forgeline.warehouse.migrations import migrate
from tests.fixtures.cell_values import VALUES

pytestmark = pytest.mark.integration

CLICKHOUSE_TYPES: dict[ColumnType, set[str]] = {
    "str": {"String", "LowCardinality(String)"},
    "uuid": {"UUID"},
    "uint32": {"UInt32"},
    "uint64": {"UInt64"},
    "int64": {"Int64"},
    "uint8": {"UInt8"},
    "float": {"Float64"},
    "millis": {"DateTime64(3, 'UTC')"},
    "str_array": {"Array(String)", "Array(LowCardinality(String))"},
    "float_array": {"Array(Float64)"},
    "nullable_float": {"Nullable(Float64)"},
    "nullable_int32": {"Nullable(Int32)"},
    "nullable_millis": {"Nullable(DateTime64(3, 'UTC'))"},
}
# Tables the code does not write through a declaration (their own modules build their rows).
UNDECLARED = {"retention_days", "retention_policies", "erasure_audit", "schema_migrations"}
PROBE = TableSpec(
    "cell_codec_probe",
    (("id", "uint64"),) + tuple((f"c_{ctype}", ctype) for ctype in sorted(get_args(ColumnType))),
    time_column="c_millis",
    key=("id",),
)


@pytest.fixture
def warehouse(tmp_path: Path) -> Iterator[ClickHouseWarehouse]:
    # Per test, and closed: chDB holds one path per process, and other tests of this worker
    # open their own between these.
    warehouse = ClickHouseWarehouse(f"chdb://{tmp_path / 'warehouse'}")
    try:
        migrate(warehouse)
        columns = ", ".join(f"{name} {sorted(CLICKHOUSE_TYPES[ctype])[0]}" for name, ctype in PROBE.columns)
        warehouse.command(f"CREATE TABLE forgeline.{PROBE.table} ({columns}) ENGINE = MergeTree ORDER BY id")
        yield warehouse
    finally:
        warehouse.close()


def test_every_column_type_has_a_clickhouse_type() -> None:
    assert set(CLICKHOUSE_TYPES) == set(get_args(ColumnType))


def test_every_declaration_is_its_table(warehouse: ClickHouseWarehouse) -> None:
    tables = {
        name: key
        for name, key in warehouse.query_rows(
            "SELECT name, sorting_key FROM system.tables WHERE database = 'forgeline' AND engine LIKE '%MergeTree'"
        )
    }
    assert set(tables) - {PROBE.table} == set(TABLES) | (UNDECLARED & set(tables))  # every written table declared
    for spec in TABLES.values():
        columns = warehouse.query_rows(
            "SELECT name, type, default_kind FROM system.columns WHERE database = 'forgeline' AND table = "
            f"'{spec.table}' ORDER BY position"
        )
        written = [(name, kind) for name, kind, default in columns if not default]
        assert [name for name, _ in written] == spec.column_names, spec.table
        for (name, kind), (_, ctype) in zip(written, spec.columns, strict=True):
            assert kind in CLICKHOUSE_TYPES[ctype], (spec.table, name, kind, ctype)
        assert tables[spec.table] == ", ".join(spec.key), spec.table


_ROWS = st.lists(st.tuples(*(VALUES[ctype] for _, ctype in PROBE.columns[1:])), min_size=1, max_size=20)
_next_id = iter(range(1, 10**9))


# One warehouse for every example is intended: each example's rows have ids of their own.
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(_ROWS)
def test_every_column_type_goes_to_the_warehouse_and_back(
    warehouse: ClickHouseWarehouse, cells_rows: list[tuple[Any, ...]]
) -> None:
    rows = [(next(_next_id), *row) for row in cells_rows]
    warehouse.insert(PROBE.table, cells.warehouse_rows(PROBE, rows), PROBE.column_names)
    ids = ", ".join(str(row[0]) for row in rows)
    where = f"FROM forgeline.{PROBE.table} WHERE id IN ({ids}) ORDER BY id"

    # As the processors read rows back: select_list, then FROM_WAREHOUSE.
    queried = warehouse.query_rows(f"SELECT {cells.select_list(PROBE)} {where}")
    expected = [dict(zip(PROBE.column_names, row, strict=True)) for row in rows]
    assert cells.rows_from_warehouse(PROBE, PROBE.column_names, queried) == expected

    # As the exporter's backfill reads them: ClickHouse's JSONEachRow of the columns themselves.
    rendered = warehouse.query_formatted(f"SELECT * {where}", "JSONEachRow")
    for line, row in zip(rendered.splitlines(), rows, strict=True):
        doc = orjson.loads(line)
        for (name, ctype), value in zip(PROBE.columns, row, strict=True):
            back = cells.FROM_WAREHOUSE[ctype](doc[name])
            assert back == value, (name, doc[name])
            assert cells.TO_LINE[ctype](back) == cells.TO_LINE[ctype](value), name


def test_times_across_datetime64_come_back_to_the_millisecond(warehouse: ClickHouseWarehouse) -> None:
    # 8668264198005: datetime.fromtimestamp(ms / 1000) is a microsecond low there, which
    # clickhouse-connect truncates to the millisecond below.
    times = [DATETIME64_MIN_MS, -1, 0, 1, 1_764_567_616_123, 8_668_264_198_005, DATETIME64_MAX_MS]
    spec = TABLES["stream_clocks"]
    names = [f"codec-{t}" for t in times]
    warehouse.insert(spec.table, cells.warehouse_rows(spec, list(zip(names, times, strict=True))), spec.column_names)
    quoted = ", ".join(f"'{name}'" for name in names)
    sql = f"SELECT {cells.select_list(spec)} FROM forgeline.{spec.table} WHERE name IN ({quoted})"
    rows = warehouse.query_rows(sql)
    back = {row["name"]: row["clock_at"] for row in cells.rows_from_warehouse(spec, spec.column_names, rows)}
    assert back == dict(zip(names, times, strict=True))
