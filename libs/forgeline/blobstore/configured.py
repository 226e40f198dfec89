"""A blob store from the settings: the one place that knows which settings a store needs."""

from __future__ import annotations

from forgeline.blobstore.factory import create_blob_store
from forgeline.blobstore.port import BlobStore
from forgeline.config import Settings


def blob_store_for(settings: Settings, url: str, public_url: str = "") -> BlobStore:
    """The store at ``url`` (uploads, exports): signing key, S3 credentials and the base of the
    URLs it hands out (``public_url``, else FORGELINE_PUBLIC_URL, else the gateway's address)."""
    return create_blob_store(
        url,
        settings.blob_signing_key.reveal(),
        settings.data_dir / "blob-signing.key",
        public_url or settings.public_url or f"http://{settings.host}:{settings.port}",
        (settings.s3_access_key.reveal(), settings.s3_secret_key.reveal()),
    )
