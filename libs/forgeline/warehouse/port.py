"""The warehouse port: batch inserts and read queries against ClickHouse.

Guarantees: ``insert`` is all-or-nothing per call for one table and safe to replay —
every table is a ReplacingMergeTree keyed by a stable row id derived from the input, so a
batch inserted twice (a crash between insert and commit) leaves one logical row; queries
that must count exactly use ``FINAL``. The port is synchronous because chDB is: async
callers use ``asyncio.to_thread``. One process owns a chDB data directory.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol


class WarehouseError(Exception):
    """A failure talking to the warehouse; ``retriable`` says whether to back off and retry."""

    def __init__(self, message: str, retriable: bool) -> None:
        super().__init__(message)
        self.retriable = retriable


class Warehouse(Protocol):
    database: str

    def insert(self, table: str, rows: Sequence[Sequence[Any]], columns: Sequence[str]) -> None: ...

    def insert_columns(self, table: str, data: Sequence[Sequence[Any]], columns: Sequence[str]) -> None:
        """Like ``insert``, with ``data`` given one sequence per column (no transposing)."""

    def insert_json_lines(self, table: str, columns: Sequence[str], lines: bytes) -> None:
        """Like ``insert``, with the rows as ``JSONEachRow`` lines (one JSON object per line,
        keyed by ``columns``) that ClickHouse parses itself; a row it cannot read fails the call."""

    def query_rows(self, sql: str, parameters: dict[str, Any] | None = None) -> list[tuple[Any, ...]]: ...

    def query_formatted(self, sql: str, fmt: str) -> bytes:
        """Run a read-only query and return the server's rendering in ``fmt`` (PrettyCompact, CSV…)."""

    def command(self, sql: str) -> None: ...

    def close(self) -> None: ...
