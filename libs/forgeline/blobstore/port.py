"""The blob-store port: where attachments (screenshots, save states, level models) and
exported files live.

Guarantees every adapter gives:
- ``upload_target`` hands out a URL a client can PUT one object to, until ``expires_at``;
  the content type and maximum size of the grant are enforced before the upload counts as
  complete (by the gateway during the PUT, or by ``complete`` afterwards: see Capabilities).
- An object is either absent or complete: a PUT cut short, or a ``put``, leaves nothing
  partial under its key; a reader sees the old object or the new one.
- ``get`` returns exactly the bytes stored (callers compare checksums); an absent key is
  ``FileNotFoundError`` on every adapter.
- ``list_objects`` returns every object whose key starts with a prefix, sorted by key.

Object operations (put, get, stat, list_objects, delete, complete) are blocking calls: async callers
run them in a thread (``asyncio.to_thread``). ``receive`` is async (it consumes a request).
What differs between adapters is a field of ``Capabilities``, not a ``hasattr`` test.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, runtime_checkable

from forgeline.mediatype import is_media_type


@dataclass(frozen=True, slots=True)
class Capabilities:
    # True: the gateway itself receives the PUT (local directory) and records completion.
    # False: the client PUTs straight to object storage (S3/MinIO); the gateway never proxies
    # bytes, and the client then POSTs the target's ``complete_url`` so the gateway checks the
    # object against its grant (``complete``) and records completion.
    gateway_receives_uploads: bool


@dataclass(frozen=True, slots=True)
class UploadGrant:
    """What a signed upload URL allows; bound into the signature, so a client cannot change it."""

    upload_id: str
    key: str
    content_type: str
    max_bytes: int
    expires_at: int  # epoch seconds
    meta: dict[str, str] = field(default_factory=dict)
    # When the grant was made (epoch seconds; 0 = now): the S3 adapter signs its URL as of then.
    issued_at: int = 0


@dataclass(frozen=True, slots=True)
class DownloadGrant:
    """What a signed download URL allows: one object of one project, until ``expires_at``.

    The console makes one after its own project check; whoever holds the URL may fetch that
    object (a download, never rendered inline) until it expires, and nothing else.
    """

    key: str
    project_id: str
    filename: str
    expires_at: int  # epoch seconds
    # When the grant was made (epoch seconds; 0 = now): the S3 adapter signs its URL as of then.
    issued_at: int = 0


@dataclass(frozen=True, slots=True)
class UploadTarget:
    url: str
    method: str
    headers: dict[str, str]
    expires_at: datetime
    # Where the client reports the upload finished; None when the PUT itself completes it.
    complete_url: str | None = None


@dataclass(frozen=True, slots=True)
class StoredObject:
    key: str
    size: int
    sha256: str
    content_type: str


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    key: str
    size: int
    # "" where the adapter does not know it: a listing on S3, any object of the local adapter.
    content_type: str
    modified: datetime


class SignatureError(Exception):
    """The upload URL was tampered with or has expired (→ 403)."""


class TooLarge(Exception):
    """More bytes arrived than the grant allows (→ 413); nothing was kept."""


class WrongContentType(Exception):
    """The uploaded object's content type is not the grant's (→ 400); nothing was kept."""


class InvalidKey(ValueError):
    """An object key no adapter may store (→ 400, never a 500): see ``check_key``."""


class InvalidContentType(ValueError):
    """A grant's content type that is no media type: it would be handed out as a header (→ 400)."""


# A file system's limit on one name (NAME_MAX), and S3's on a whole key.
MAX_SEGMENT_BYTES = 255
MAX_KEY_BYTES = 1024


def check_key(key: str) -> str:
    """``key`` if every adapter can store it safely; InvalidKey otherwise.

    Refused: empty keys or segments (so no absolute key), dot-led segments (the local adapter's
    temp files are, and '..' climbs), control characters (NUL, CR, LF…), text that is not valid
    UTF-8 (lone surrogates), a segment over 255 bytes or a key over 1024 bytes.
    """
    try:
        encoded = key.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidKey(f"object key is not valid UTF-8: {key!r}") from None
    parts = key.split("/")
    if (
        not key
        or len(encoded) > MAX_KEY_BYTES
        or any(p == "" or p.startswith(".") or len(p.encode()) > MAX_SEGMENT_BYTES for p in parts)
        or any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in key)
    ):
        raise InvalidKey(f"bad object key {key!r}")
    return key


def check_content_type(content_type: str) -> str:
    """``content_type`` if it is a media type (RFC 9110) that is safe to send as a header."""
    if not is_media_type(content_type):
        raise InvalidContentType(f"bad content type {content_type!r}")
    return content_type


def download_name(filename: str) -> str:
    """A file name safe inside ``Content-Disposition: attachment; filename="…"``."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", filename)[:128] or "attachment"


def check_prefix(prefix: str) -> str:
    """A listing prefix: "" (everything) or a key-like string (it may end with '/')."""
    if prefix.startswith("/") or any(p in (".", "..") for p in prefix.split("/")) or "\x00" in prefix:
        raise InvalidKey(f"bad key prefix {prefix!r}")
    return prefix


@runtime_checkable
class BlobStore(Protocol):
    capabilities: Capabilities

    def upload_target(self, grant: UploadGrant) -> UploadTarget:
        """A URL the client PUTs the object to (pre-signed; expires at ``grant.expires_at``)."""

    def verify(self, token: str, now: float) -> UploadGrant:
        """The grant a signed gateway URL carries; SignatureError when forged or expired."""

    def download_url(self, grant: DownloadGrant) -> str:
        """A URL that downloads ``grant.key`` as an attachment until ``grant.expires_at``
        (the gateway's signed route for the local store, a pre-signed GET for S3)."""

    def verify_download(self, token: str, now: float) -> DownloadGrant:
        """The download grant a signed gateway URL carries; SignatureError when forged or expired."""

    async def receive(self, grant: UploadGrant, chunks: AsyncIterator[bytes]) -> StoredObject:
        """Store a streamed body under ``grant.key``: all of it, or nothing (TooLarge, disconnect)."""

    def complete(self, grant: UploadGrant) -> StoredObject:
        """Check the object a client uploaded against its grant and checksum it.

        FileNotFoundError when nothing was uploaded; TooLarge / WrongContentType when it breaks
        the grant, and then the object is deleted.
        """

    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> StoredObject:
        """Store ``data`` under ``key`` atomically (replacing any object there)."""

    def get(self, key: str) -> bytes:
        """The stored bytes; FileNotFoundError when absent."""

    def stat(self, key: str) -> ObjectInfo:
        """Size, content type and time of one object; FileNotFoundError when absent."""

    def list_objects(self, prefix: str = "") -> list[ObjectInfo]:
        """Every complete object whose key starts with ``prefix``, sorted by key."""

    def delete(self, key: str) -> None:
        """Remove an object; no error when it is already absent."""
