"""When an event id was first accepted, so that a resent event is the same row.

A client that resends an event with its own ``uuid`` but no ``occurred_at`` would get a new
receive time, and so a new ``occurred_at`` (it defaults to the receive time), and the
tables' sorting key — which holds ``occurred_at`` — would keep two rows of one id. Reusing
the first receive time makes the resent row identical to the first, and the tables collapse
it. Bounded (least recently used first out) and per gateway process: a resend that reaches
another replica, or this one after a restart, gets its own receive time, and the writer
then makes it the stored row (services/writer/resends.py).
"""

from __future__ import annotations

from collections import OrderedDict
from datetime import datetime


class FirstReceived:
    def __init__(self, capacity: int = 50_000) -> None:
        self._capacity = capacity
        self._at: OrderedDict[str, datetime] = OrderedDict()

    def get(self, key: str) -> datetime | None:
        at = self._at.get(key)
        if at is not None:
            self._at.move_to_end(key)
        return at

    def remember(self, key: str, at: datetime) -> None:
        """Keeps the first time: remembering a key again only refreshes its place."""
        self._at.setdefault(key, at)
        self._at.move_to_end(key)
        while len(self._at) > self._capacity:
            self._at.popitem(last=False)
