"""The blob-store port: where attachments (screenshots, save states, level models) live.

Guarantees every adapter gives:
- ``upload_target`` hands out a URL a client can PUT one object to, until ``expires_at``,
  with the content type and a maximum size bound into it; nothing else can be written there.
- An object is either absent or complete: a PUT cut short leaves nothing under its key.
- ``read`` returns exactly the bytes stored (callers compare checksums).
- ``put_object`` is atomic: readers (and ``list_keys``) see the old object, no object, or
  the complete new one, never part of it (local: temp file, fsync, rename; S3: one PUT).
  Putting the same bytes under the same key again is harmless (the exporter's replays).
- ``list_keys`` returns the complete objects under a key prefix, sorted.

What differs between adapters is a field of ``Capabilities``, not a ``hasattr`` test.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class Capabilities:
    # True: the gateway itself receives the PUT (local directory) and records completion.
    # False: the client PUTs straight to object storage (S3/MinIO); the gateway never proxies bytes.
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


@dataclass(frozen=True, slots=True)
class UploadTarget:
    url: str
    method: str
    headers: dict[str, str]
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class StoredObject:
    key: str
    size: int
    sha256: str
    content_type: str


class SignatureError(Exception):
    """The upload URL was tampered with or has expired (→ 403)."""


class TooLarge(Exception):
    """More bytes arrived than the grant allows (→ 413); nothing was kept."""


@runtime_checkable
class BlobStore(Protocol):
    capabilities: Capabilities

    def upload_target(self, grant: UploadGrant) -> UploadTarget:
        """A URL the client PUTs the object to (pre-signed; expires at ``grant.expires_at``)."""

    def verify(self, token: str, now: float) -> UploadGrant:
        """The grant a gateway-received PUT carries; SignatureError when forged or expired."""

    async def receive(self, grant: UploadGrant, chunks: AsyncIterator[bytes]) -> StoredObject:
        """Store a streamed PUT under ``grant.key``: all of it, or nothing (TooLarge, disconnect)."""

    def read(self, key: str) -> bytes:
        """The stored bytes; FileNotFoundError when absent."""

    async def put_object(self, key: str, data: bytes, content_type: str) -> StoredObject:
        """Store ``data`` under ``key`` whole or not at all; durable when this returns."""

    async def list_keys(self, prefix: str) -> list[str]:
        """Keys of the complete objects whose key starts with ``prefix`` (sorted; never temp files)."""
