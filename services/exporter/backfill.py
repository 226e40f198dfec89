"""`forgeline export --kind K --from T1 --to T2 --out DIR|s3://…`: NDJSON from the warehouse.

One query per UTC hour of the range (``FINAL``, so replayed rows count once), through the
running processors' read-only ``/query`` endpoint (chDB allows one process per data
directory, as for `forgeline sql`) or straight to ClickHouse with ``--dsn``. Each hour
becomes ``<table>/date=…/hour=…/backfill-<from ms>-<to ms>.ndjson[.gz]``: the same lines
the exporter writes for those rows, and the same file again if the command is re-run.

Limits: an hour's rows are held in memory (the admin endpoint answers whole); a backfill
into the exporter's own destination duplicates rows the exporter already wrote there, so
use it for ranges from before the exporter ran, or another destination.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

import httpx
import orjson

from forgeline.blobstore.local import LocalBlobStore
from forgeline.blobstore.port import BlobStore
from forgeline.config import Settings
from forgeline.schemas.cells import datetime_to_millis, format_millis
from forgeline.schemas.records import RecordKind
from services.exporter.files import (
    CONTENT_TYPE,
    GZIP_CONTENT_TYPE,
    backfill_key,
    encode_file,
    encode_line,
    kind_for,
    row_from_warehouse,
)

HOUR_MS = 3_600_000
MAX_HOURS = 24 * 366 * 5  # a typo in a year should not start a decade of queries


class BackfillError(Exception):
    """A bad argument or an unreachable source; the message says which."""


def parse_time(text: str, flag: str) -> int:
    """ISO 8601 (``2026-11-23``, ``2026-11-23T10:00``, ``…Z``, ``…+02:00``) → epoch ms; naive = UTC."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise BackfillError(f"{flag} {text!r}: expected an ISO 8601 date or time, e.g. 2026-11-23T10:00:00Z") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return datetime_to_millis(moment)  # exact: timestamp() * 1000 can land a millisecond low


def hour_windows(start_ms: int, end_ms: int) -> list[tuple[int, int]]:
    """[start, end) cut at UTC hour boundaries."""
    if end_ms <= start_ms:
        raise BackfillError("--to must be after --from")
    windows: list[tuple[int, int]] = []
    at = start_ms
    while at < end_ms:
        boundary = (at // HOUR_MS + 1) * HOUR_MS
        windows.append((at, min(boundary, end_ms)))
        at = boundary
        if len(windows) > MAX_HOURS:
            raise BackfillError(f"range longer than {MAX_HOURS} hours; split it")
    return windows


def hour_sql(kind: RecordKind, database: str, start_ms: int, end_ms: int) -> str:
    column = kind.time_column
    columns = ", ".join(f"`{name}`" for name in kind.column_names)
    return (
        f"SELECT {columns} FROM {database}.{kind.table} FINAL "
        f"WHERE `{column}` >= fromUnixTimestamp64Milli(toInt64({int(start_ms)}), 'UTC') "
        f"AND `{column}` < fromUnixTimestamp64Milli(toInt64({int(end_ms)}), 'UTC') "
        f"ORDER BY `{column}`, `{kind.column_names[0]}`"
    )  # no SETTINGS: the admin endpoint is read-only; row_from_warehouse reads quoted 64-bit ints


Query = Callable[[str], bytes]


def admin_query(admin_url: str, headers: dict[str, str] | None = None) -> Query:
    def run(sql: str) -> bytes:
        try:
            response = httpx.post(
                f"{admin_url}/query", json={"sql": sql, "format": "JSONEachRow"}, headers=headers or {}, timeout=300
            )
        except httpx.TransportError as err:
            raise BackfillError(
                f"cannot reach the processors at {admin_url} ({err}); is `forgeline up` running? "
                "(or pass --dsn to read ClickHouse directly)"
            ) from err
        if response.status_code != 200:
            try:
                message = response.json().get("error", response.text)
            except ValueError:
                message = response.text
            raise BackfillError(f"query failed: {message}")
        return response.content

    return run


def dsn_query(dsn: str) -> tuple[Query, Callable[[], None]]:
    from forgeline.warehouse.client import ClickHouseWarehouse
    from forgeline.warehouse.port import WarehouseError

    try:
        warehouse = ClickHouseWarehouse(dsn)
    except WarehouseError as err:
        raise BackfillError(str(err)) from err

    def run(sql: str) -> bytes:
        try:
            return warehouse.query_formatted(sql, "JSONEachRow")
        except WarehouseError as err:
            raise BackfillError(f"query failed: {err}") from err

    return run, warehouse.close


def destination(settings: Settings, out: str) -> BlobStore:
    if "://" not in out:
        return LocalBlobStore(Path(out).resolve(), b"backfill-writes-no-upload-urls", "http://127.0.0.1")
    from forgeline.blobstore.configured import blob_store_for

    try:
        return blob_store_for(settings, out)
    except ValueError as err:
        raise BackfillError(f"--out {out!r}: {err}") from err


class Progress:
    """A one-line progress bar on stderr (a line per 10% when stderr is not a terminal)."""

    def __init__(self, total: int, stream: IO[str] | None = None) -> None:
        self.total = max(total, 1)
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.started = time.monotonic()
        self._last_decile = -1

    def update(self, done: int, rows: int, files: int) -> None:
        fraction = done / self.total
        elapsed = time.monotonic() - self.started
        text = f"{done}/{self.total} hours  {rows:,} rows  {files} files  {elapsed:.1f}s"
        if self.tty:
            bar = "#" * int(fraction * 30)
            self.stream.write(f"\r[{bar:<30}] {fraction:4.0%} {text}")
            if done == self.total:
                self.stream.write("\n")
        elif int(fraction * 10) > self._last_decile:
            self._last_decile = int(fraction * 10)
            self.stream.write(f"{fraction:4.0%} {text}\n")
        self.stream.flush()


@dataclass
class BackfillResult:
    rows: int
    files: list[str]


async def backfill(
    kind: RecordKind,
    start_ms: int,
    end_ms: int,
    query: Query,
    store: BlobStore,
    compress: bool,
    database: str = "forgeline",
    progress: Progress | None = None,
) -> BackfillResult:
    windows = hour_windows(start_ms, end_ms)
    progress = progress or Progress(len(windows))
    rows, files = 0, []
    for done, (low, high) in enumerate(windows, start=1):
        raw = await asyncio.to_thread(query, hour_sql(kind, database, low, high))
        lines = [encode_line(row_from_warehouse(kind, orjson.loads(line))) for line in raw.splitlines() if line]
        if lines:
            stamp = format_millis(low)
            key = backfill_key(kind, stamp[:10], stamp[11:13], start_ms, end_ms, compress)
            data = encode_file(lines, compress)
            await asyncio.to_thread(store.put, key, data, GZIP_CONTENT_TYPE if compress else CONTENT_TYPE)
            rows += len(lines)
            files.append(key)
        progress.update(done, rows, len(files))
    return BackfillResult(rows, files)


def backfill_command(settings: Settings, kind_name: str, since: str, until: str, out: str | None,
                     compress: bool, dsn: str | None, admin_url: str | None) -> int:  # fmt: skip
    # Without --out, under the data directory: never into the working directory (a checkout).
    out = out or str(settings.data_dir.resolve() / "backfill")
    try:
        kind = kind_for(kind_name)
        start_ms, end_ms = parse_time(since, "--from"), parse_time(until, "--to")
        hour_windows(start_ms, end_ms)  # validate before touching anything
        store = destination(settings, out)
        close: Callable[[], None] = lambda: None  # noqa: E731
        if dsn:
            query, close = dsn_query(dsn)
        else:
            from services.runfile import admin_headers
            from services.runfile import admin_url as resolve_admin_url

            query = admin_query(resolve_admin_url(settings, admin_url), admin_headers(settings))
        try:
            result = asyncio.run(backfill(kind, start_ms, end_ms, query, store, compress))
        finally:
            close()
    except (BackfillError, ValueError) as err:
        print(f"forgeline export: {err}", file=sys.stderr)
        return 1
    print(f"{result.rows} rows in {len(result.files)} files → {out}")
    for key in result.files:
        print(key)
    return 0
