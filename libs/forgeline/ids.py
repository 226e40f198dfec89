"""Ids derived from input, so that a retry or a replay produces the same id."""

from __future__ import annotations

import uuid

# Namespace for every UUIDv5 Forgeline derives (a fixed, random UUID).
FORGELINE_NAMESPACE = uuid.UUID("6f1d3c4e-2a7b-4c1e-9a55-0b7d1f3e8c21")


def derived_uuid(*parts: str) -> uuid.UUID:
    return uuid.uuid5(FORGELINE_NAMESPACE, "\x1f".join(parts))


def legacy_id(event_id: uuid.UUID) -> int:
    """Logister answers with a numeric ``legacy_id``; ours is the top 48 bits of the id.

    48 bits stay exact in JavaScript numbers, and the same event id always gives the
    same legacy id, without any counter to coordinate between gateway replicas.
    """
    return int.from_bytes(event_id.bytes[:6], "big")
