"""A bounded memory of recently accepted event ids, to mark batch replays as duplicates.

Only a hint for the response: the guarantee that a replay stores nothing new comes from
the pipeline (rows keyed by event id). Ids are remembered only after the bus acknowledged
them, so forgetting or remembering never loses an event.
"""

from __future__ import annotations

from collections import OrderedDict


class RecentIds:
    def __init__(self, capacity: int = 100_000) -> None:
        self._capacity = capacity
        self._ids: OrderedDict[str, None] = OrderedDict()

    def __contains__(self, key: str) -> bool:
        return key in self._ids

    def add(self, key: str) -> None:
        self._ids[key] = None
        self._ids.move_to_end(key)
        while len(self._ids) > self._capacity:
            self._ids.popitem(last=False)
