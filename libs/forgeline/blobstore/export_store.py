"""The exporter's destination (``file://DIR`` or ``s3://…``), through the blob-store port."""

from __future__ import annotations

from forgeline.blobstore.factory import create_blob_store
from forgeline.blobstore.port import BlobStore
from forgeline.config import Settings


def create_export_store(settings: Settings, url: str) -> BlobStore:
    return create_blob_store(
        url,
        settings.blob_signing_key,
        settings.data_dir / "blob-signing.key",
        settings.public_url or f"http://{settings.host}:{settings.port}",
        (settings.s3_access_key, settings.s3_secret_key),
    )
