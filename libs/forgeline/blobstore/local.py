"""Local-directory blob store (embedded default): the gateway signs URLs and receives the PUT.

A URL carries its grant (key, content type, size cap, expiry, tenancy) as base64url JSON
plus an HMAC-SHA256 over it: stateless, so any gateway sharing the key can check it, and
any change to the grant breaks the signature. Bytes stream into a temp file in the same
directory, are fsynced, then renamed into place: a reader never sees a partial object.

Limits: one machine (the directory is not shared between hosts); disk writes run on the
event loop in 64 KiB pieces, fine for an embedded deployment, not for heavy upload traffic.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import os
import secrets
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
