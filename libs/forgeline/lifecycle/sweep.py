"""Blobs and NDJSON exports under the same per-project retention as the warehouse.

Blob keys start with the project (``<project>/<upload>/<name>``: kind ``uploads``;
``<project>/models/…``: kind ``models``) and age from when they were stored. Export keys
start with the table (``<table>/date=YYYY-MM-DD/hour=HH/…``) and age from that hour; one
file holds lines of several projects, so a file past some projects' days is rewritten
without their lines, and deleted once none is left. On s3:// the same sweep runs (list,
delete, rewrite); a bucket lifecycle rule can bound the ages as well (docs/lifecycle.md).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from forgeline.blobstore.port import BlobStore
from forgeline.lifecycle.erasure import rewrite_export
from forgeline.lifecycle.retention import DEFAULTS_PROJECT, TABLES_BY_NAME, effective_days

log = logging.getLogger(__name__)
_EXPORT_KEY = re.compile(r"^(?P<table>[a-z_]+)/date=(?P<date>\d{4}-\d{2}-\d{2})/hour=(?P<hour>\d{2})/")

Policies = Mapping[str, Mapping[str, int]]


@dataclass
class SweepResult:
    blobs_deleted: int = 0
    export_files_deleted: int = 0
    export_files_rewritten: int = 0
    export_lines_removed: int = 0


def blob_kind(key: str) -> tuple[str, str] | None:
    """(project, kind) of an upload or model key; None for a key of another shape."""
    parts = key.split("/")
    if len(parts) < 3:
        return None
    return parts[0], "models" if parts[1] == "models" else "uploads"


def sweep_blobs(store: BlobStore, stored: Policies, now: datetime, result: SweepResult) -> None:
    for info in store.list_objects(""):
        owner = blob_kind(info.key)
        if owner is None:
            continue
        project, kind = owner
        modified = info.modified if info.modified.tzinfo else info.modified.replace(tzinfo=UTC)
        if modified + timedelta(days=effective_days(stored, project, kind)) <= now:
            store.delete(info.key)
            result.blobs_deleted += 1


def sweep_exports(store: BlobStore, stored: Policies, now: datetime, result: SweepResult) -> None:
    for info in store.list_objects(""):
        match = _EXPORT_KEY.match(info.key)
        table = TABLES_BY_NAME.get(match["table"]) if match else None
        if match is None or table is None:
            continue
        # The hour's end: a line of that hour is at most this old.
        hour_end = datetime.fromisoformat(f"{match['date']}T{match['hour']}:00:00+00:00") + timedelta(hours=1)
        age = now - hour_end
        days = [d[table.kind] for d in stored.values() if d.get(table.kind)]
        shortest = min([*days, effective_days(stored, DEFAULTS_PROJECT, table.kind)])
        if age < timedelta(days=shortest):
            continue  # nobody's lines are old enough yet

        def expired(line: Mapping[str, Any], kind: str = table.kind, age: timedelta = age) -> bool:
            project = str(line.get("project_id", ""))
            return age >= timedelta(days=effective_days(stored, project, kind))

        removed = rewrite_export(store, info.key, expired)
        if removed:
            result.export_lines_removed += removed
            result.export_files_rewritten += 1
        if _is_empty(store, info.key):
            store.delete(info.key)
            result.export_files_deleted += 1


def _is_empty(store: BlobStore, key: str) -> bool:
    import gzip

    data = store.get(key)
    return not (gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data).strip()


def sweep(uploads: BlobStore | None, exports: BlobStore | None, stored: Policies, now: datetime) -> SweepResult:
    result = SweepResult()
    if uploads is not None:
        sweep_blobs(uploads, stored, now, result)
    if exports is not None:
        sweep_exports(exports, stored, now, result)
    if result.blobs_deleted or result.export_files_deleted or result.export_lines_removed:
        log.info("retention sweep", extra=result.__dict__)
    return result
