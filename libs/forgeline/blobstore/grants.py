"""HMAC-signed upload grants, shared by both adapters.

A token carries its grant (key, content type, size cap, expiry, tenancy) as base64url JSON
plus an HMAC-SHA256 over it: stateless, so any gateway sharing the key can check it, and
any change to the grant breaks the signature. The local adapter puts it in the PUT URL; the
S3 adapter puts it in the completion URL (S3 checks its own pre-signed PUT URL).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import secrets
from pathlib import Path
from typing import Any

import orjson

from forgeline.blobstore.port import DownloadGrant, SignatureError, UploadGrant
from forgeline.private_fs import make_private_dirs

# Gateway paths the tokens are good for: the local store's PUT, the S3 store's completion.
UPLOAD_PATH = "/v1/blobs"
COMPLETE_PATH = UPLOAD_PATH + "/{upload_id}/complete"
# The local store's signed download (GET); an S3 store hands out pre-signed GETs instead.
DOWNLOAD_PATH = "/v1/blob-downloads"


# base64url payload (a grant is well under 16 KiB), ".", base64url HMAC-SHA256 (32 bytes → 43 chars).
_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,16384}\.[A-Za-z0-9_-]{43}")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def load_or_create_key(path: Path) -> bytes:
    """The signing key of this data dir, created once with mode 0600."""
    if path.exists():
        return path.read_bytes()
    make_private_dirs(path.parent)
    key = secrets.token_bytes(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key)
    return key


class GrantSigner:
    def __init__(self, key: bytes) -> None:
        self._key = key

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

    def download_token(self, grant: DownloadGrant) -> str:
        # "op" marks a download: an upload token has none, so neither passes for the other.
        doc = {"op": "get", "k": grant.key, "p": grant.project_id, "f": grant.filename, "exp": grant.expires_at}
        payload = _b64(orjson.dumps(doc))
        return f"{payload}.{self._sign(payload)}"

    def verify_download(self, token: str, now: float) -> DownloadGrant:
        """The download grant of a token; SignatureError when forged, malformed, an upload's, or expired."""
        doc = self._checked(token)
        try:
            if doc.get("op") != "get":
                raise SignatureError("not a download token")
            grant = DownloadGrant(
                key=str(doc["k"]), project_id=str(doc["p"]), filename=str(doc["f"]), expires_at=int(doc["exp"])
            )
        except (ValueError, KeyError, TypeError, AttributeError) as err:
            raise SignatureError("bad grant") from err
        if now >= grant.expires_at:
            raise SignatureError("expired")
        return grant

    def _checked(self, token: str) -> dict[str, Any]:
        """The payload of a token whose signature is ours; SignatureError otherwise."""
        if not _TOKEN.fullmatch(token):
            raise SignatureError("malformed token")
        payload, _, signature = token.partition(".")
        if not hmac.compare_digest(signature.encode("ascii"), self._sign(payload).encode("ascii")):
            raise SignatureError("bad signature")
        try:
            doc = orjson.loads(_unb64(payload))
        except ValueError as err:
            raise SignatureError("bad grant") from err
        if not isinstance(doc, dict):
            raise SignatureError("bad grant")
        return doc

    def verify(self, token: str, now: float) -> UploadGrant:
        """The grant of a token; SignatureError when forged, malformed, or expired at ``now``."""
        # Shape first: compare_digest raises TypeError on non-ASCII text ("a.%C3%A9"), and
        # anything that is not base64url "payload.signature" cannot be ours anyway.
        if not _TOKEN.fullmatch(token):
            raise SignatureError("malformed token")
        payload, _, signature = token.partition(".")
        if not hmac.compare_digest(signature.encode("ascii"), self._sign(payload).encode("ascii")):
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
