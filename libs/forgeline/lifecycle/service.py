"""The lifecycle jobs of the process that owns the warehouse: policies, erasure, sweeps.

The admin port calls ``retention`` and ``erase`` (chDB allows one process per data
directory, so they must run here); ``run_sweeps`` removes expired blobs and export lines
every ``interval_s``. All calls block: async callers use ``asyncio.to_thread``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from forgeline.blobstore.port import BlobStore
from forgeline.lifecycle import retention
from forgeline.lifecycle.erasure import Eraser, Subject
from forgeline.lifecycle.sweep import SweepResult, sweep
from forgeline.warehouse.port import Warehouse

log = logging.getLogger(__name__)


class Lifecycle:
    def __init__(
        self,
        warehouse: Warehouse,
        uploads: BlobStore | None,
        exports: BlobStore | None,
        salt: bytes,
        defaults: Mapping[str, int],
    ) -> None:
        self._warehouse = warehouse
        self._uploads = uploads
        self._exports = exports
        self._eraser = Eraser(warehouse, uploads, exports, salt)
        self._defaults = dict(defaults)
        # One job at a time: an erasure and a sweep rewriting the same export file would race.
        self._lock = threading.Lock()

    def start(self) -> None:
        """Rebuild the lookup from the stored policies; make the defaults those of the settings."""
        with self._lock:
            retention.sync_lookup(self._warehouse)
            rewritten = retention.apply_defaults(self._warehouse, self._defaults)
        if rewritten:
            log.info("retention defaults changed", extra={"tables": rewritten})

    def retention(self, project_id: str, days: Mapping[str, int]) -> dict[str, Any]:
        """Set ``days`` (may be empty: just read) and return the project's days for every kind."""
        with self._lock:
            rewritten = retention.apply_policy(self._warehouse, project_id, days)
            stored = retention.policies(self._warehouse)
        own = stored.get(project_id, {})
        return {
            "project_id": project_id,
            "days": {kind: retention.effective_days(stored, project_id, kind) for kind in retention.KINDS},
            "own": dict(sorted(own.items())),
            "rewritten": rewritten,
        }

    def erase(self, subject: Subject) -> dict[str, Any]:
        with self._lock:
            return self._eraser.erase(subject).as_dict()

    def sweep(self, now: datetime | None = None) -> SweepResult:
        with self._lock:
            stored = retention.policies(self._warehouse)
            return sweep(self._uploads, self._exports, stored, now or datetime.now(UTC))

    async def run_sweeps(self, interval_s: float, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            try:
                await asyncio.to_thread(self.sweep)
            except Exception:  # noqa: BLE001 - a failed sweep is retried next time; it must not stop ingest
                log.exception("retention sweep failed")
            try:
                await asyncio.wait_for(stopping.wait(), timeout=interval_s)
            except TimeoutError:
                pass
