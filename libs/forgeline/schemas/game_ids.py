"""The event ids of a game events request, as text, without a UUID object per id.

Exactly ``forge.event_ids`` (``forgeline.ids.owned_uuids``: a UUIDv5-style SHA-1 of the
request's digest and the item's index, turned into an id owned by the project), computed on
bytes: the hash states of the shared prefixes are built once per request and copied per item.
A 200-event batch spent more in building ``uuid.UUID`` objects and their text than in hashing.
tests/unit/game_hotpath/test_game_ids.py holds the two to the same output.
"""

from __future__ import annotations

import hashlib

from forgeline.ids import FORGELINE_NAMESPACE, OWNED_VERSION, _tagger
from forgeline.schemas.forge import EVENT_ID


def forge_event_ids(project_id: str, environment: str, body_digest: str, count: int) -> list[str]:
    """``[str(i) for i in forge.event_ids(project_id, environment, body_digest, count)]``."""
    parts = ("forge_event", project_id, environment, body_digest, "")
    prefix = hashlib.sha1(FORGELINE_NAMESPACE.bytes + "\x1f".join(parts).encode())
    tagger = _tagger(EVENT_ID, project_id)
    version = OWNED_VERSION << 4
    out: list[str] = []
    for n in range(count):
        item = prefix.copy()
        item.update(str(n).encode())
        seed = item.digest()
        # forgeline.ids._owned: the version nibble of byte 6, the RFC variant bits of byte 8.
        head = seed[:6] + bytes(((seed[6] & 0x0F) | version, seed[7], (seed[8] & 0x3F) | 0x80))
        tag = tagger.copy()
        tag.update(head)
        text = (head + tag.digest()).hex()
        out.append(f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}")
    return out


def msgpack_event_ids(project_id: str, app_id: str, body_digest: str, first: int, count: int) -> list[str]:
    """``[str(msgpack.event_id(project_id, app_id, body_digest, first + n)) for n in range(count)]``.

    ``event_id`` is a UUIDv5 of the parts joined by \\x1f: the shared prefix is hashed once.
    """
    parts = ("msgpack", project_id, app_id, body_digest, "")
    prefix = hashlib.sha1(FORGELINE_NAMESPACE.bytes + "\x1f".join(parts).encode())
    out: list[str] = []
    for n in range(first, first + count):
        item = prefix.copy()
        item.update(str(n).encode())
        seed = item.digest()
        # uuid.UUID(bytes=..., version=5): the version nibble of byte 6, the RFC variant bits of byte 8.
        text = (seed[:6] + bytes(((seed[6] & 0x0F) | 0x50, seed[7], (seed[8] & 0x3F) | 0x80)) + seed[9:16]).hex()
        out.append(f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}")
    return out
