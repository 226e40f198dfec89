"""S3 / MinIO blob store through the minio SDK: clients PUT straight to the bucket.

Upload flow (the gateway never proxies the bytes):
1. ``upload_target`` gives the client a pre-signed PUT URL of the object (signed as of the
   grant's ``issued_at``, valid until its ``expires_at``) and a ``complete_url`` on the gateway
   carrying the HMAC-signed grant (grants.py).
2. The client PUTs the bytes to S3. S3 checks the URL's signature and expiry (tampered or
   expired → S3's own 403).
3. The client POSTs ``complete_url``. ``complete`` stats the object and enforces the grant:
   larger than ``max_bytes`` → TooLarge (413), another Content-Type → WrongContentType (400);
   either way the object is deleted. Then it reads the object once to checksum it, and the
   gateway records the completion on the bus.

Why size is checked on completion and not by S3: the minio SDK signs a pre-signed URL over
the host header only, so S3 cannot hold the client to a Content-Length or Content-Type on a
PUT (a pre-signed POST policy could, but the Forge contract hands out PUT URLs). Until the
completion check the object exists unverified, and nothing references it: only completed
uploads reach the bus. A client could overwrite the object with the same URL until it
expires, so keep FORGELINE_UPLOAD_URL_TTL_SECONDS short.

``put`` is one S3 PutObject (multipart above the SDK's part size, still atomic: an object
appears only when its upload completes), so exporters never expose a partial file.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, BinaryIO, cast
from urllib.parse import quote

from minio import Minio
from minio.error import S3Error

from forgeline.blobstore.grants import COMPLETE_PATH, GrantSigner
from forgeline.blobstore.port import (
    Capabilities,
    DownloadGrant,
    ObjectInfo,
    StoredObject,
    TooLarge,
    UploadGrant,
    UploadTarget,
    WrongContentType,
    check_content_type,
    check_key,
    check_prefix,
    download_name,
)
from forgeline.mediatype import essence

_MISSING = frozenset({"NoSuchKey", "NoSuchObject", "ResourceNotFound"})
_MAX_PRESIGN_SECONDS = 7 * 24 * 3600  # the longest a SigV4 pre-signed URL may live
_SPOOL_BYTES = 8 * 1024 * 1024  # bodies the gateway stores itself stay in memory up to this
_CHUNK = 1024 * 1024


@contextmanager
def _s3_errors(key: str) -> Iterator[None]:
    try:
        yield
    except S3Error as err:
        if err.code in _MISSING:
            raise FileNotFoundError(key) from err
        raise


class S3BlobStore:
    capabilities = Capabilities(gateway_receives_uploads=False)

    def __init__(
        self,
        client: Minio,
        bucket: str,
        signing_key: bytes,
        public_url: str,
        presign_client: Minio | None = None,
    ) -> None:
        """``client`` reaches the bucket from the gateway; ``presign_client`` (default: the
        same) names the endpoint clients reach, for the URLs handed out. Neither is contacted
        here: with a region configured, pre-signing is offline."""
        self.client = client
        self.bucket = bucket
        self._presign = presign_client or client
        self._signer = GrantSigner(signing_key)
        self._public_url = public_url.rstrip("/")

    # --- uploads -------------------------------------------------------------------------

    def upload_target(self, grant: UploadGrant) -> UploadTarget:
        check_content_type(grant.content_type)
        issued = grant.issued_at or int(time.time())
        lifetime = max(1, min(grant.expires_at - issued, _MAX_PRESIGN_SECONDS))
        url = self._presign.get_presigned_url(
            "PUT",
            self.bucket,
            check_key(grant.key),
            expires=timedelta(seconds=lifetime),
            request_date=datetime.fromtimestamp(issued, UTC),
        )
        complete = COMPLETE_PATH.format(upload_id=quote(grant.upload_id))
        return UploadTarget(
            url=url,
            method="PUT",
            headers={"Content-Type": grant.content_type},
            expires_at=datetime.fromtimestamp(issued + lifetime, UTC),
            complete_url=f"{self._public_url}{complete}?token={self._signer.token(grant)}",
        )

    def verify(self, token: str, now: float) -> UploadGrant:
        return self._signer.verify(token, now)

    def download_url(self, grant: DownloadGrant) -> str:
        """A pre-signed GET: S3 checks signature and expiry (403 otherwise) and answers with the
        signed response headers, so the object is a download whatever type it was stored with."""
        issued = grant.issued_at or int(time.time())
        lifetime = max(1, min(grant.expires_at - issued, _MAX_PRESIGN_SECONDS))
        return self._presign.get_presigned_url(
            "GET",
            self.bucket,
            check_key(grant.key),
            expires=timedelta(seconds=lifetime),
            response_headers={
                "response-content-disposition": f'attachment; filename="{download_name(grant.filename)}"',
                "response-content-type": "application/octet-stream",
            },
            request_date=datetime.fromtimestamp(issued, UTC),
        )

    def verify_download(self, token: str, now: float) -> DownloadGrant:
        return self._signer.verify_download(token, now)

    def complete(self, grant: UploadGrant) -> StoredObject:
        info = self.stat(grant.key)
        if info.size > grant.max_bytes:
            self.delete(grant.key)
            raise TooLarge(grant.max_bytes)
        if essence(info.content_type) != essence(grant.content_type):
            self.delete(grant.key)
            raise WrongContentType(info.content_type)
        digest = hashlib.sha256()
        size = 0
        with _s3_errors(grant.key):
            response = self.client.get_object(self.bucket, grant.key)
            try:
                for chunk in response.stream(_CHUNK):
                    size += len(chunk)
                    digest.update(chunk)
            finally:
                response.close()
                response.release_conn()
        # Overwritten between stat and read (same URL, still valid): judge what was read.
        if size > grant.max_bytes:
            self.delete(grant.key)
            raise TooLarge(grant.max_bytes)
        return StoredObject(grant.key, size, digest.hexdigest(), grant.content_type)

    async def receive(self, grant: UploadGrant, chunks: AsyncIterator[bytes]) -> StoredObject:
        """A body the gateway itself must store (POST /api/models): spooled, then one PutObject."""
        check_key(grant.key)
        digest = hashlib.sha256()
        size = 0
        with tempfile.SpooledTemporaryFile(max_size=_SPOOL_BYTES) as spool:
            async for chunk in chunks:
                size += len(chunk)
                if size > grant.max_bytes:
                    raise TooLarge(grant.max_bytes)
                digest.update(chunk)
                spool.write(chunk)
            spool.seek(0)
            # SpooledTemporaryFile is a binary file, though typeshed does not call it a BinaryIO.
            body = cast(BinaryIO, spool)
            await asyncio.to_thread(self._put_stream, grant.key, body, size, grant.content_type)
        return StoredObject(grant.key, size, digest.hexdigest(), grant.content_type)

    # --- objects -------------------------------------------------------------------------

    def _put_stream(self, key: str, data: BinaryIO, length: int, content_type: str) -> None:
        self.client.put_object(self.bucket, key, data, length, content_type=content_type)

    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> StoredObject:
        self._put_stream(check_key(key), io.BytesIO(data), len(data), content_type)
        return StoredObject(key, len(data), hashlib.sha256(data).hexdigest(), content_type)

    def get(self, key: str) -> bytes:
        with _s3_errors(key):
            response = self.client.get_object(self.bucket, check_key(key))
            try:
                return bytes(response.read())
            finally:
                response.close()
                response.release_conn()

    def stat(self, key: str) -> ObjectInfo:
        with _s3_errors(key):
            found = self.client.stat_object(self.bucket, check_key(key))
        return ObjectInfo(key, int(found.size or 0), found.content_type or "", _when(found.last_modified))

    def list_objects(self, prefix: str = "") -> list[ObjectInfo]:
        found = [
            ObjectInfo(str(obj.object_name), int(obj.size or 0), "", _when(obj.last_modified))
            for obj in self.client.list_objects(self.bucket, prefix=check_prefix(prefix) or None, recursive=True)
            if not obj.is_dir
        ]
        return sorted(found, key=lambda info: info.key)

    def delete(self, key: str) -> None:
        # S3 DeleteObject succeeds on an absent key: nothing to map.
        self.client.remove_object(self.bucket, check_key(key))

    def ensure_bucket(self) -> None:
        """Create the bucket when it is missing (tests, first start of a dev MinIO)."""
        if not self.client.bucket_exists(self.bucket):
            self.client.make_bucket(self.bucket)


def _when(value: Any) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromtimestamp(0, UTC)
