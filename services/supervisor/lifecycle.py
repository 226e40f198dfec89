"""The lifecycle jobs (retention, erasure, sweeps) of the process that owns the warehouse."""

from __future__ import annotations

from forgeline.blobstore.configured import blob_store_for
from forgeline.config import Settings
from forgeline.lifecycle.erasure import load_salt
from forgeline.lifecycle.retention import KINDS
from forgeline.lifecycle.service import Lifecycle
from forgeline.warehouse.port import Warehouse


def retention_defaults(settings: Settings) -> dict[str, int]:
    """Every kind's default days: FORGELINE_RETENTION_DAYS, unless FORGELINE_RETENTION names it."""
    return {kind: settings.retention_days for kind in KINDS} | dict(settings.retention)


def open_lifecycle(settings: Settings, warehouse: Warehouse) -> Lifecycle:
    """Blocking (it may rewrite rows when the default days changed): run it in a thread."""
    # Embedded (chDB), the stores default to directories of this data dir. Distributed, a
    # default would be a local directory nobody else writes: only configured stores are used.
    embedded = settings.resolved_warehouse_dsn.startswith("chdb://")
    uploads = settings.blob_store_url or embedded
    exports = settings.export_url or embedded
    lifecycle = Lifecycle(
        warehouse,
        blob_store_for(settings, settings.resolved_blob_store_url) if uploads else None,
        blob_store_for(settings, settings.resolved_export_url) if exports else None,
        load_salt(settings.data_dir.resolve(), settings.erasure_salt.reveal()),
        retention_defaults(settings),
    )
    lifecycle.start()
    return lifecycle
