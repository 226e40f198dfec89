"""The lifecycle jobs (retention, erasure, sweeps) of the process that owns the warehouse."""

from __future__ import annotations

from forgeline.blobstore.factory import create_blob_store
from forgeline.blobstore.port import BlobStore
from forgeline.config import Settings
from forgeline.lifecycle.erasure import load_salt
from forgeline.lifecycle.retention import KINDS
from forgeline.lifecycle.service import Lifecycle
from forgeline.warehouse.port import Warehouse


def _store(settings: Settings, url: str) -> BlobStore:
    return create_blob_store(
        url,
        settings.blob_signing_key,
        settings.data_dir / "blob-signing.key",
        settings.public_url or f"http://{settings.host}:{settings.port}",
        (settings.s3_access_key, settings.s3_secret_key),
    )


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
        _store(settings, settings.resolved_blob_store_url) if uploads else None,
        _store(settings, settings.resolved_export_url) if exports else None,
        load_salt(settings.data_dir.resolve(), settings.erasure_salt),
        retention_defaults(settings),
    )
    lifecycle.start()
    return lifecycle
