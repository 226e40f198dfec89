"""Local-directory blob store (embedded default): the gateway signs URLs and receives the PUT.

A URL carries its grant as an HMAC-signed token (grants.py). Bytes stream into a temp file
in the same directory, are fsynced, then renamed into place: a reader never sees a partial
object, and a listing skips the temp files (their names start with a dot, which no key's may).

``put`` (the exporter's files) writes its temp file under ``.tmp/`` in the root instead (the
same file system, so the rename stays atomic) and fsyncs the directory after the rename, so
the object is durable when ``put`` returns (the exporter commits offsets after it). A process
killed mid-put leaves only a ``.tmp/`` file, outside every key's directory, which a later
store removes once it is an hour old.

Limits: one machine (the directory is not shared between hosts); disk writes run on the
event loop in 64 KiB pieces, fine for an embedded deployment, not for heavy upload traffic.
Content types are not kept: ObjectInfo.content_type is "" here.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

from forgeline.atomic import write_atomic
from forgeline.blobstore.grants import DOWNLOAD_PATH, GrantSigner
from forgeline.blobstore.grants import UPLOAD_PATH as UPLOAD_PATH
from forgeline.blobstore.grants import load_or_create_key as load_or_create_key
from forgeline.blobstore.port import (
    Capabilities,
    DownloadGrant,
    ObjectInfo,
    StoredObject,
    TooLarge,
    UploadGrant,
    UploadTarget,
    check_content_type,
    check_key,
    check_prefix,
)
from forgeline.private_fs import make_private_dirs, open_private, private_dir

TEMP_DIR = ".tmp"
STALE_TEMP_SECONDS = 3600.0
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL  # temp names are random: never an existing file


class LocalBlobStore:
    capabilities = Capabilities(gateway_receives_uploads=True)

    def __init__(self, root: Path, signing_key: bytes, public_url: str) -> None:
        self.root = root
        self._signer = GrantSigner(signing_key)
        self._public_url = public_url.rstrip("/")
        private_dir(root)  # 0700 (player uploads and exports), also a root an older version made 0755
        _remove_stale_temps(root / TEMP_DIR)

    def token(self, grant: UploadGrant) -> str:
        return self._signer.token(grant)

    def upload_target(self, grant: UploadGrant) -> UploadTarget:
        # Refuse now what the PUT could not store, or a header the client must not be told to send.
        check_key(grant.key)
        check_content_type(grant.content_type)
        url = f"{self._public_url}{UPLOAD_PATH}/{quote(grant.upload_id)}?token={self.token(grant)}"
        return UploadTarget(
            url=url,
            method="PUT",
            headers={"Content-Type": grant.content_type},
            expires_at=datetime.fromtimestamp(grant.expires_at, UTC),
        )

    def verify(self, token: str, now: float) -> UploadGrant:
        return self._signer.verify(token, now)

    def download_url(self, grant: DownloadGrant) -> str:
        check_key(grant.key)
        return f"{self._public_url}{DOWNLOAD_PATH}?token={self._signer.download_token(grant)}"

    def verify_download(self, token: str, now: float) -> DownloadGrant:
        return self._signer.verify_download(token, now)

    def file_path(self, key: str) -> Path:
        """Where an object's bytes are (the gateway streams signed downloads from it)."""
        return self._path(key)

    def _path(self, key: str) -> Path:
        path = (self.root / check_key(key)).resolve()
        if self.root.resolve() not in path.parents:
            raise ValueError(f"key escapes the store: {key!r}")
        return path

    def _temp(self, final: Path) -> Path:
        make_private_dirs(final.parent)
        # Not named after the object: a 255-byte name plus a suffix would be too long for the disk.
        return final.with_name(f".{secrets.token_hex(8)}.part")

    async def receive(self, grant: UploadGrant, chunks: AsyncIterator[bytes]) -> StoredObject:
        final = self._path(grant.key)
        temp = self._temp(final)
        digest = hashlib.sha256()
        size = 0
        try:
            with os.fdopen(open_private(temp, _CREATE), "wb") as handle:
                async for chunk in chunks:
                    size += len(chunk)
                    if size > grant.max_bytes:
                        raise TooLarge(grant.max_bytes)
                    digest.update(chunk)
                    handle.write(chunk)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp, final)
        except BaseException:
            # Disconnect, oversize, cancellation: nothing half-written stays behind.
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()
            raise
        return StoredObject(grant.key, size, digest.hexdigest(), grant.content_type)

    def complete(self, grant: UploadGrant) -> StoredObject:
        # The gateway's PUT already enforced the grant; this re-checks size and checksums.
        path = self._path(grant.key)
        size = path.stat().st_size
        if size > grant.max_bytes:
            path.unlink(missing_ok=True)
            raise TooLarge(grant.max_bytes)
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            while chunk := handle.read(1024 * 1024):
                digest.update(chunk)
        return StoredObject(grant.key, size, digest.hexdigest(), grant.content_type)

    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> StoredObject:
        final = self._path(key)
        make_private_dirs(final.parent)
        temp_dir = self.root / TEMP_DIR
        make_private_dirs(temp_dir)
        # Durable on return, directory entry included (the exporter commits offsets after it).
        write_atomic(final, data, temp=temp_dir / f"{secrets.token_hex(8)}.part", exclusive=True)
        return StoredObject(key, len(data), hashlib.sha256(data).hexdigest(), content_type)

    def get(self, key: str) -> bytes:
        return self._path(key).read_bytes()

    # Kept for callers written before ``get`` joined the port.
    read = get

    def stat(self, key: str) -> ObjectInfo:
        return self._info(key, self._path(key))

    def _info(self, key: str, path: Path) -> ObjectInfo:
        st = path.stat()
        return ObjectInfo(key, st.st_size, "", datetime.fromtimestamp(st.st_mtime, UTC))

    def list_objects(self, prefix: str = "") -> list[ObjectInfo]:
        check_prefix(prefix)
        root = self.root.resolve()
        # Walk only the deepest directory the prefix names, not the whole store.
        base = root / prefix.rsplit("/", 1)[0] if "/" in prefix else root
        if not base.is_dir():
            return []
        found = []
        for path in base.rglob("*"):
            key = path.relative_to(root).as_posix()
            # Dot-led names are temp files (``.<hex>.part``, anything under ``.tmp/``).
            if any(part.startswith(".") for part in key.split("/")) or not path.is_file():
                continue
            if key.startswith(prefix):
                found.append(self._info(key, path))
        return sorted(found, key=lambda info: info.key)

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)


def _remove_stale_temps(temp_dir: Path) -> None:
    """Temp files of puts that a kill interrupted; an hour old, so never one still being written."""
    if not temp_dir.is_dir():
        return
    cutoff = time.time() - STALE_TEMP_SECONDS
    for path in temp_dir.glob("*.part"):
        with contextlib.suppress(FileNotFoundError):
            if path.stat().st_mtime < cutoff:
                path.unlink()
