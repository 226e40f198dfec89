"""One factory picks the blob-store adapter from a URL: ``file://<dir>`` or ``s3://…``."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

from forgeline.blobstore.local import LocalBlobStore, load_or_create_key
from forgeline.blobstore.port import BlobStore


def create_blob_store(url: str, signing_key: str, key_file: Path, public_url: str) -> BlobStore:
    parsed = urlparse(url)
    if parsed.scheme == "file":
        key = signing_key.encode() if signing_key else load_or_create_key(key_file)
        return LocalBlobStore(Path(parsed.path), key, public_url)
    raise ValueError(f"unsupported blob store URL scheme {parsed.scheme!r}; use file:// (s3:// is not built yet)")
