"""One factory picks the blob-store adapter from a URL: ``file://<dir>`` or ``s3://<bucket>?…``.

``s3://BUCKET?endpoint=http://127.0.0.1:9000&region=us-east-1&public_endpoint=https://files.example``
- ``endpoint``: where the gateway reaches S3/MinIO (scheme http or https); default AWS S3.
- ``region``: the bucket's region (default us-east-1); given, pre-signing needs no request.
- ``public_endpoint``: where clients reach it, for the pre-signed URLs (default: ``endpoint``).
Credentials come from FORGELINE_S3_ACCESS_KEY / FORGELINE_S3_SECRET_KEY (Settings), never
from the URL, so the URL can be logged.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlparse

from forgeline.blobstore.grants import load_or_create_key
from forgeline.blobstore.local import LocalBlobStore
from forgeline.blobstore.port import BlobStore

S3_OPTIONS = frozenset({"endpoint", "region", "public_endpoint"})


class BlobStoreConfigError(ValueError):
    """The blob store URL or its credentials cannot be used; the message says which part."""


def create_blob_store(
    url: str,
    signing_key: str,
    key_file: Path,
    public_url: str,
    s3_credentials: tuple[str, str] = ("", ""),
) -> BlobStore:
    parsed = urlparse(url)
    key = signing_key.encode() if signing_key else load_or_create_key(key_file)
    if parsed.scheme == "file":
        return LocalBlobStore(Path(parsed.path), key, public_url)
    if parsed.scheme == "s3":
        return _s3(url, key, public_url, s3_credentials)
    raise BlobStoreConfigError(f"unsupported blob store URL scheme {parsed.scheme!r}; use file://DIR or s3://BUCKET")


def _endpoint(name: str, value: str) -> tuple[str, bool]:
    parsed = urlparse(value)
    if parsed.scheme not in ("http", "https") or not parsed.netloc or parsed.path not in ("", "/"):
        raise BlobStoreConfigError(f"blob store URL: {name}={value!r} must be http(s)://host[:port]")
    return parsed.netloc, parsed.scheme == "https"


def _s3(url: str, signing_key: bytes, public_url: str, credentials: tuple[str, str]) -> BlobStore:
    from minio import Minio  # imported here: a file:// deployment never loads the SDK

    from forgeline.blobstore.s3 import S3BlobStore

    parsed = urlparse(url)
    bucket = parsed.netloc
    if not bucket or parsed.path not in ("", "/") or "@" in bucket:
        raise BlobStoreConfigError(f"blob store URL {url!r}: use s3://BUCKET?endpoint=… (no path, no credentials)")
    query = parse_qs(parsed.query, keep_blank_values=True)
    unknown = set(query) - S3_OPTIONS
    if unknown:
        raise BlobStoreConfigError(f"blob store URL: unknown option(s) {sorted(unknown)}; known: {sorted(S3_OPTIONS)}")
    option = {name: values[-1] for name, values in query.items()}
    access_key, secret_key = credentials
    if not access_key or not secret_key:
        raise BlobStoreConfigError("an s3:// blob store needs FORGELINE_S3_ACCESS_KEY and FORGELINE_S3_SECRET_KEY")
    region = option.get("region") or "us-east-1"
    host, secure = _endpoint("endpoint", option["endpoint"]) if option.get("endpoint") else ("s3.amazonaws.com", True)
    client = Minio(host, access_key=access_key, secret_key=secret_key, secure=secure, region=region)
    presign = None
    if option.get("public_endpoint"):
        public_host, public_secure = _endpoint("public_endpoint", option["public_endpoint"])
        presign = Minio(public_host, access_key=access_key, secret_key=secret_key, secure=public_secure, region=region)
    return S3BlobStore(client, bucket, signing_key, public_url, presign_client=presign)
