"""The one warehouse adapter: clickhouse-connect, for a ClickHouse server or chDB.

``chdb:///path`` selects clickhouse-connect's in-process chDB backend, anything else
(``http://user:pass@host:8123``) a server; the SQL and the code are the same.

chDB limits (see clickhouse-connect's ``_chdbclient.py``): one engine per process and
per data directory, no async client, the host's time zone — hence explicit UTC columns,
a lock around every call, and a single owning process in embedded mode.
"""

from __future__ import annotations

import struct
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import clickhouse_connect
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError, DatabaseError, OperationalError

from forgeline.private_fs import private_dir
from forgeline.warehouse import guard
from forgeline.warehouse.port import WarehouseError

DATABASE = "forgeline"
# JSONEachRow inserts fail loudly on a row that does not match its table (an unknown key, a
# null for a column that is not Nullable, any unreadable value) instead of storing a default,
# and still compute the DEFAULT columns the lines leave out (``expires_at``). A block is not
# deduplicated on insert (~1.5x faster on chDB): a replayed row collapses at the next merge,
# as replays across blocks always did, and exact counts use FINAL either way.
_JSON_LINES = {
    "optimize_on_insert": 0,
    "input_format_skip_unknown_fields": 0,
    "input_format_null_as_default": 0,
    "input_format_defaults_for_omitted_fields": 1,
    "input_format_allow_errors_num": 0,
    "input_format_allow_errors_ratio": 0,
}


class ClickHouseWarehouse:
    def __init__(self, dsn: str, database: str = DATABASE) -> None:
        self.database = database
        self._lock = threading.Lock()
        chdb_dir = dsn.removeprefix("chdb://").split("?", 1)[0] if dsn.startswith("chdb://") else ""
        if chdb_dir.startswith("/"):  # chDB's files are player data: its directory is 0700
            private_dir(Path(chdb_dir))
        try:
            self._client: Client = clickhouse_connect.get_client(dsn=dsn)
            self._client.command(f"CREATE DATABASE IF NOT EXISTS {database}")
            # A second client for analysts' queries (`query_formatted`), read-only for its
            # whole life: chDB keeps settings per connection (a server gets them with every
            # request), so `readonly` never reaches the writer's inserts, and a query cannot
            # lift it (readonly=1 forbids changing any setting, itself included).
            self._reader: Client = clickhouse_connect.get_client(dsn=dsn, database=database, settings={"readonly": 1})
        except ClickHouseError as err:
            raise WarehouseError(f"cannot open warehouse {_redact(dsn)}: {err}", retriable=True) from err
        self._catalog: guard.Catalog | None = None

    def insert(self, table: str, rows: Sequence[Sequence[Any]], columns: Sequence[str]) -> None:
        if not rows:
            return
        with self._lock, _translated(inserting=True):
            self._client.insert(f"{self.database}.{table}", rows, column_names=list(columns))

    def insert_columns(self, table: str, data: Sequence[Sequence[Any]], columns: Sequence[str]) -> None:
        if not data or not data[0]:
            return
        with self._lock, _translated(inserting=True):
            self._client.insert(f"{self.database}.{table}", data, column_names=list(columns), column_oriented=True)

    def insert_json_lines(self, table: str, columns: Sequence[str], lines: bytes) -> None:
        if not lines:
            return
        with self._lock, _translated(inserting=True):
            self._client.raw_insert(
                f"{self.database}.{table}", list(columns), insert_block=lines, fmt="JSONEachRow", settings=_JSON_LINES
            )

    def query_rows(self, sql: str, parameters: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        with self._lock, _translated():
            return [tuple(row) for row in self._client.query(sql, parameters=parameters).result_rows]

    def query_formatted(self, sql: str, fmt: str) -> bytes:
        """Run one read-only statement for an analyst (see ``guard``); QueryRefused says why not."""
        statement, fmt = guard.statement_of(sql), guard.output_format(fmt)
        with self._lock:
            # The server parses the exact text it would run; the tree decides, not a prefix.
            explained = self._explain(statement, fmt)
            guard.check_ast(explained, fmt, self._reader_catalog(), self.database)
            with _translated():
                return bytes(self._reader.raw_query(guard.run_sql(statement, fmt)))

    def _explain(self, statement: str, fmt: str) -> str:
        try:
            with _translated():
                return bytes(self._reader.raw_query(guard.explain_sql(statement, fmt))).decode("utf-8", "replace")
        except WarehouseError as err:
            if err.retriable:
                raise
            if "Cannot modify" in str(err):
                raise guard.QueryRefused(
                    f"SETTINGS clauses are not allowed (queries here run read-only): {err}"
                ) from err
            # The text parses without our FORMAT but not with it: the query has its own.
            # Or it is a statement that takes no FORMAT (SET, SYSTEM…): name it either way.
            try:
                with _translated():
                    bare = bytes(self._reader.raw_query(f"EXPLAIN AST {statement}")).decode()
            except WarehouseError as bare_err:
                if "SYNTAX_ERROR" in str(bare_err):
                    # Not a refusal: the text does not parse. Say where, in the caller's text.
                    raise guard.syntax_error(str(bare_err), "EXPLAIN AST ") from err
                raise guard.QueryRefused(f"the warehouse cannot run this query: {err}") from err
            guard.check_statement_kind(bare)
            raise guard.QueryRefused(
                'remove the FORMAT clause: choose the output format with --format ("format" in the request)'
            ) from err

    def _reader_catalog(self) -> guard.Catalog:
        if self._catalog is None:
            with _translated():
                rows = self._reader.query(
                    "SELECT 't', lower(name) FROM system.table_functions UNION ALL "
                    "SELECT 'f', lower(name) FROM system.functions UNION ALL "
                    "SELECT 'd', lower(name) FROM system.databases"
                ).result_rows
            names: dict[str, set[str]] = {"t": set(), "f": set(), "d": set()}
            for tag, name in rows:
                names[tag].add(name)
            self._catalog = guard.Catalog(frozenset(names["t"]), frozenset(names["f"]), frozenset(names["d"]))
        return self._catalog

    def command(self, sql: str) -> None:
        with self._lock, _translated():
            self._client.command(sql)

    def close(self) -> None:
        with self._lock:
            self._reader.close()
            self._client.close()


class _translated:
    """Map clickhouse-connect errors onto the port's WarehouseError (retriable or not)."""

    def __init__(self, inserting: bool = False) -> None:
        self._inserting = inserting

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        if exc is None:
            return
        if self._inserting and isinstance(exc, TypeError | ValueError | OverflowError | struct.error):
            # clickhouse-connect serialises in Python: a value that does not fit its column
            # (e.g. 2**70 in an Int64) fails here, before the server sees the batch.
            raise WarehouseError(f"a value does not fit its column: {exc!r}"[:2000], retriable=False) from exc
        if not isinstance(exc, ClickHouseError):
            return
        retriable = isinstance(exc, OperationalError) or not isinstance(exc, DatabaseError)
        raise WarehouseError(str(exc).strip()[:2000], retriable=retriable) from exc


def _redact(dsn: str) -> str:
    scheme, sep, rest = dsn.partition("://")
    if "@" in rest:
        rest = "***@" + rest.split("@", 1)[1]
    return scheme + sep + rest
