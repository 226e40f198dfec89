"""Local-directory blob store (embedded default): the gateway signs URLs and receives the PUT.

A URL carries its grant (key, content type, size cap, expiry, tenancy) as base64url JSON
plus an HMAC-SHA256 over it: stateless, so any gateway sharing the key can check it, and
any change to the grant breaks the signature. Bytes stream into a temp file in the same
directory, are fsynced, then renamed into place: a reader never sees a partial object.

``put_object`` (the exporter's files) writes a temp file under ``.tmp/`` in the root (same
file system, so the rename is atomic), fsyncs it, renames it into place and fsyncs the
directory; a process killed before the rename leaves only a ``.tmp/`` file, which no key
lists and which a later store removes once it is an hour old.

Limits: one machine (the directory is not shared between hosts); disk writes run on the
event loop in 64 KiB pieces, fine for an embedded deployment, not for heavy upload traffic.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import os
import secrets
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import orjson

from forgeline.blobstore.port import (
    Capabilities,
    SignatureError,
    StoredObject,
    TooLarge,
    UploadGrant,
    UploadTarget,
)

UPLOAD_PATH = "/v1/blobs"
TEMP_DIR = ".tmp"
STALE_TEMP_SECONDS = 3600.0


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def load_or_create_key(path: Path) -> bytes:
    """The signing key of this data dir, created once with mode 0600."""
    if path.exists():
        return path.read_bytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_bytes(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key)
    return key


class LocalBlobStore:
    capabilities = Capabilities(gateway_receives_uploads=True)

    def __init__(self, root: Path, signing_key: bytes, public_url: str) -> None:
        self.root = root
        self._key = signing_key
        self._public_url = public_url.rstrip("/")
        root.mkdir(parents=True, exist_ok=True)
        _remove_stale_temps(root / TEMP_DIR)

    def _sign(self, payload: str) -> str:
        return _b64(hmac.new(self._key, payload.encode(), hashlib.sha256).digest())

    def token(self, grant: UploadGrant) -> str:
        payload = _b64(
            orjson.dumps(
                {
                    "id": grant.upload_id,
                    "k": grant.key,
                    "ct": grant.content_type,
                    "max": grant.max_bytes,
                    "exp": grant.expires_at,
                    "m": grant.meta,
                }
            )
        )
        return f"{payload}.{self._sign(payload)}"

    def upload_target(self, grant: UploadGrant) -> UploadTarget:
        url = f"{self._public_url}{UPLOAD_PATH}/{quote(grant.upload_id)}?token={self.token(grant)}"
        return UploadTarget(
            url=url,
            method="PUT",
            headers={"Content-Type": grant.content_type},
            expires_at=datetime.fromtimestamp(grant.expires_at, UTC),
        )

    def verify(self, token: str, now: float) -> UploadGrant:
        payload, _, signature = token.partition(".")
        if not signature or not hmac.compare_digest(signature, self._sign(payload)):
            raise SignatureError("bad signature")
        try:
            doc = orjson.loads(_unb64(payload))
            grant = UploadGrant(
                upload_id=str(doc["id"]),
                key=str(doc["k"]),
                content_type=str(doc["ct"]),
                max_bytes=int(doc["max"]),
                expires_at=int(doc["exp"]),
                meta={str(k): str(v) for k, v in doc["m"].items()},
            )
        except (ValueError, KeyError, TypeError, AttributeError) as err:
            raise SignatureError("bad grant") from err
        if now >= grant.expires_at:
            raise SignatureError("expired")
        return grant

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if self.root.resolve() not in path.parents:
            raise ValueError(f"key escapes the store: {key!r}")
        return path

    async def receive(self, grant: UploadGrant, chunks: AsyncIterator[bytes]) -> StoredObject:
        final = self._path(grant.key)
        final.parent.mkdir(parents=True, exist_ok=True)
        temp = final.with_name(f".{final.name}.{secrets.token_hex(6)}.part")
        digest = hashlib.sha256()
        size = 0
        try:
            with open(temp, "wb") as handle:
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

    def read(self, key: str) -> bytes:
        return self._path(key).read_bytes()

    async def put_object(self, key: str, data: bytes, content_type: str) -> StoredObject:
        return await asyncio.to_thread(self._put, key, data, content_type)

    def _put(self, key: str, data: bytes, content_type: str) -> StoredObject:
        final = self._path(key)
        final.parent.mkdir(parents=True, exist_ok=True)
        temp_dir = self.root / TEMP_DIR
        temp_dir.mkdir(exist_ok=True)
        temp = temp_dir / f"{secrets.token_hex(8)}.part"
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(temp, final)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()
            raise
        # The rename is durable only once its directory is.
        dir_fd = os.open(final.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        return StoredObject(key, len(data), hashlib.sha256(data).hexdigest(), content_type)

    async def list_keys(self, prefix: str) -> list[str]:
        return await asyncio.to_thread(self._list, prefix)

    def _list(self, prefix: str) -> list[str]:
        folder, _, _ = prefix.rpartition("/")
        start = self._path(folder) if folder else self.root.resolve()
        if not start.is_dir():
            return []
        root = self.root.resolve()
        keys: list[str] = []
        for directory, dirnames, filenames in os.walk(start):
            # Hidden names are temp files (``.tmp/``, ``.<name>.part`` of uploads in progress).
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            relative = Path(directory).relative_to(root).as_posix()
            base = "" if relative == "." else relative + "/"
            keys.extend(base + f for f in filenames if not f.startswith(".") and (base + f).startswith(prefix))
        return sorted(keys)


def _remove_stale_temps(temp_dir: Path) -> None:
    """Temp files of puts that a kill interrupted; an hour old, so never one still being written."""
    if not temp_dir.is_dir():
        return
    cutoff = time.time() - STALE_TEMP_SECONDS
    for path in temp_dir.glob("*.part"):
        with contextlib.suppress(FileNotFoundError):
            if path.stat().st_mtime < cutoff:
                path.unlink()
