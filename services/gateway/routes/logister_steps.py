"""The steps every Logister route shares, as the batch route sees them.

`LogisterApi` (logister.py) implements them and mounts the batch route (logister_batch.py);
the batch route needs only this interface, so the two modules do not import each other.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from starlette.requests import Request

from forgeline.config import Settings
from forgeline.schemas import logister, logister_raw
from forgeline.tenancy.model import Principal
from services.gateway.body import BodyLimits
from services.gateway.ratelimit import Decision
from services.gateway.recent import RecentIds


def seen_id(project_id: str, event_id: uuid.UUID) -> str:
    """The key of an event id in the gateway's recent-id caches (its integer in hex: formatted in C,
    where ``str(uuid)`` and ``uuid.hex`` run Python code)."""
    return f"{project_id}:{event_id.int:x}"


class LogisterSteps(Protocol):
    settings: Settings
    batch_limits: BodyLimits
    recent_ids: RecentIds

    async def principal(self, request: Request) -> Principal:
        """Who sent the request; raises 401 (or 429 after too many failures)."""
        ...

    def limit(self, principal: Principal, endpoint: str, cost: int = 1) -> Decision:
        """The per-token-and-endpoint limit; raises 429 when spent."""
        ...

    def now(self) -> datetime:
        """The gateway clock, once per request."""
        ...

    def received_at(self, seen: str, now: datetime) -> datetime:
        """When the event of ``seen`` (seen_id) was first accepted (a resent id keeps it), else ``now``."""
        ...

    def ingest_context(
        self, principal: Principal, event_id: uuid.UUID, received_at: datetime | None = None
    ) -> logister.IngestContext: ...

    async def publish_batch(
        self, principal: Principal, items: Sequence[logister_raw.AcceptedItem], received: Sequence[tuple[str, datetime]]
    ) -> None:
        """Enqueue an accepted batch as one ``"v": 2`` record (a few above the record budget);
        ``received[i]`` is ``items[i]``'s seen_id and receive time. Returns once durable."""
        ...
