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
from forgeline.warehouse.port import WarehouseError

DATABASE = "forgeline"
READ_ONLY_PREFIXES = ("select", "with", "show", "describe", "desc", "explain", "exists")


class ClickHouseWarehouse:
    def __init__(self, dsn: str, database: str = DATABASE) -> None:
        self.database = database
        self._lock = threading.Lock()
        chdb_dir = dsn.removeprefix("chdb://").split("?", 1)[0] if dsn.startswith("chdb://") else ""
        if chdb_dir.startswith("/"):  # chDB's files are player data: its directory is 0700
            private_dir(Path(chdb_dir))
        try:
            self._client: Client = clickhouse_connect.get_client(dsn=dsn)
            # A second client for analysts' queries: chDB keeps settings per connection,
            # so `readonly` set here never leaks into the writer's inserts.
            self._reader: Client = clickhouse_connect.get_client(dsn=dsn)
        except ClickHouseError as err:
            raise WarehouseError(f"cannot open warehouse {_redact(dsn)}: {err}", retriable=True) from err
        self.command(f"CREATE DATABASE IF NOT EXISTS {database}")

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

    def query_rows(self, sql: str, parameters: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        with self._lock, _translated():
            return [tuple(row) for row in self._client.query(sql, parameters=parameters).result_rows]

    def query_formatted(self, sql: str, fmt: str) -> bytes:
        statement = sql.strip().rstrip(";").strip()
        if not statement.lower().startswith(READ_ONLY_PREFIXES):
            raise WarehouseError("only read-only statements (SELECT, SHOW, DESCRIBE, EXPLAIN…)", retriable=False)
        if _has_statement_separator(statement):
            # chDB runs every statement of a multi-statement string: allow exactly one.
            raise WarehouseError("one statement at a time (no ';' between statements)", retriable=False)
        if not fmt.replace("_", "").isalnum():
            raise WarehouseError(f"bad output format {fmt!r}", retriable=False)
        with self._lock, _translated():
            result = self._reader.raw_query(f"{statement}\nFORMAT {fmt}", settings={"readonly": 2})
        return bytes(result)

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


def _has_statement_separator(sql: str) -> bool:
    """Whether ``sql`` has a ';' outside quotes and comments."""
    quote: str | None = None
    i = 0
    while i < len(sql):
        ch = sql[i]
        if quote:
            if ch == "\\":
                i += 1
            elif ch == quote:
                quote = None
        elif ch in "'\"`":
            quote = ch
        elif sql.startswith("--", i):
            newline = sql.find("\n", i)
            i = len(sql) if newline < 0 else newline
        elif ch == ";":
            return True
        i += 1
    return False
