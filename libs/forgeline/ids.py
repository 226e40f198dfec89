"""Ids derived from input, so that a retry or a replay produces the same id."""

from __future__ import annotations

import hashlib
import hmac
import os
import uuid
from typing import Any

# Namespace for every UUIDv5 Forgeline derives (a fixed, random UUID).
FORGELINE_NAMESPACE = uuid.UUID("6f1d3c4e-2a7b-4c1e-9a55-0b7d1f3e8c21")


def derived_uuid(*parts: str) -> uuid.UUID:
    return uuid.uuid5(FORGELINE_NAMESPACE, "\x1f".join(parts))


def derived_uuids(count: int, *parts: str) -> list[uuid.UUID]:
    """``derived_uuid(*parts, str(n))`` for n in 0..count-1 — the ids of a batch's items.

    The shared prefix is hashed once and the hash state copied per item: a 200-item batch
    no longer pays uuid5's full cost 200 times.
    """
    prefix = hashlib.sha1(FORGELINE_NAMESPACE.bytes + "\x1f".join((*parts, "")).encode())
    ids: list[uuid.UUID] = []
    for n in range(count):
        item = prefix.copy()
        item.update(str(n).encode())
        ids.append(uuid.UUID(bytes=item.digest()[:16], version=5))
    return ids


# --- ids owned by a project -------------------------------------------------------------
#
# Sessions, uploads and game events are cited by later requests (a report names its session,
# events and uploads). The gateway must refuse a citation of another project's id before
# anything is stored, with no lookup: so these ids carry their owner. An owned id is a
# version-8 UUID (RFC 9562, "custom"): 9 bytes of head (random, or derived from the request)
# and 7 bytes of tag = BLAKE2b(kind, project id, head). Whoever knows a project's id can
# compute tags for it, and that is fine: the tag does not prove who *sent* an id, only which
# project it *belongs* to, and a request is only ever checked against its own token's
# project. Another project's id fails that check unless 56 bits collide (p = 2^-56 per id).
# The head keeps 66 random bits: a collision within one project is even odds only after
# ~10^10 ids of one kind.

OWNED_VERSION = 8
_HEAD = 9


def _tagger(kind: str, project_id: str) -> Any:
    """The hash state of (kind, project): each id's tag is a copy of it fed the id's head."""
    prefix = f"forgeline-owned\x1f{kind}\x1f{project_id}\x1f".encode("utf-8", "surrogatepass")
    return hashlib.blake2b(prefix, digest_size=16 - _HEAD)


def _tag(tagger: Any, head: bytes) -> bytes:
    state = tagger.copy()
    state.update(head)
    digest: bytes = state.digest()
    return digest


def _owned(tagger: Any, seed: bytes) -> uuid.UUID:
    head = bytearray(seed[:_HEAD])
    if len(head) != _HEAD:
        raise ValueError(f"an owned id needs a seed of at least {_HEAD} bytes")
    head[6] = (head[6] & 0x0F) | (OWNED_VERSION << 4)
    head[8] = (head[8] & 0x3F) | 0x80  # RFC 4122/9562 variant
    return uuid.UUID(bytes=bytes(head) + _tag(tagger, bytes(head)))


def owned_uuid(kind: str, project_id: str, seed: bytes) -> uuid.UUID:
    """The id of ``kind`` owned by ``project_id`` whose head comes from ``seed`` (≥ 9 bytes).

    The same (kind, project, seed) always gives the same id: derived seeds keep replays
    idempotent; random seeds give fresh ids.
    """
    return _owned(_tagger(kind, project_id), seed)


def new_owned_uuid(kind: str, project_id: str) -> uuid.UUID:
    """A fresh random id of ``kind`` owned by ``project_id`` (a session, an upload)."""
    return owned_uuid(kind, project_id, _POOL.take(_HEAD))


def owned_uuids(kind: str, project_id: str, count: int, *parts: str) -> list[uuid.UUID]:
    """Owned ids for a batch's items, each seeded by ``derived_uuids(count, *parts)``."""
    tagger = _tagger(kind, project_id)
    return [_owned(tagger, d.bytes) for d in derived_uuids(count, *parts)]


def is_owned(value: uuid.UUID | str, kind: str, project_id: str) -> bool:
    """Whether ``value`` is an id of ``kind`` that ``project_id`` owns (False for anything else,
    including ids issued before ids carried their owner, and text that is no UUID)."""
    if not isinstance(value, uuid.UUID):
        try:
            value = uuid.UUID(value)
        except (ValueError, TypeError, AttributeError):
            return False
    raw = value.bytes
    if raw[6] >> 4 != OWNED_VERSION or raw[8] >> 6 != 0b10:
        return False
    return hmac.compare_digest(raw[_HEAD:], _tag(_tagger(kind, project_id), raw[:_HEAD]))


def legacy_id(event_id: uuid.UUID) -> int:
    """Logister answers with a numeric ``legacy_id``; ours is the top 48 bits of the id.

    48 bits stay exact in JavaScript numbers, and the same event id always gives the
    same legacy id, without any counter to coordinate between gateway replicas.
    """
    return int.from_bytes(event_id.bytes[:6], "big")


class _RandomPool:
    """Random bytes fetched 4 KiB at a time: one getrandom() per 256 ids instead of one each.

    The profile of the single-event route showed ``uuid.uuid4`` (one syscall per call) at
    ~8% of the gateway's samples; the bytes are the same quality (os.urandom).
    """

    def __init__(self, size: int = 4096) -> None:
        self._size = size
        self._buffer = b""
        self._offset = 0

    def take(self, n: int) -> bytes:
        if self._offset + n > len(self._buffer):
            self._buffer, self._offset = os.urandom(self._size), 0
        chunk = self._buffer[self._offset : self._offset + n]
        self._offset += n
        return chunk

    def reset(self) -> None:
        self._buffer, self._offset = b"", 0


_POOL = _RandomPool()
# A forked child must never hand out the parent's remaining bytes again.
os.register_at_fork(after_in_child=_POOL.reset)


def new_uuid4() -> uuid.UUID:
    """A random (version 4) UUID, like ``uuid.uuid4()`` but from a pooled random buffer."""
    return uuid.UUID(bytes=_POOL.take(16), version=4)
