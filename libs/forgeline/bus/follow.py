"""Reading a control topic into memory: once up to its end at start, then what arrives.

Tenancy (the gateway), notify targets and the delivery log (the notifier) each keep a table
built from a compacted control topic. They read it through a group-less ``bus.reader``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from forgeline.bus.port import Consumer, Record, TopicPartition

log = logging.getLogger(__name__)

# How long a start waits to read a control topic to its end before going on without it.
READ_TO_END_TIMEOUT_S = 30.0

# Applies one record; False when it was unreadable (and skipped).
Apply = Callable[[Record], bool]


async def read_to_end(reader: Consumer, apply: Apply, timeout_s: float = READ_TO_END_TIMEOUT_S) -> int:
    """Apply every record up to the end each partition has now; returns how many applied.

    An empty poll is not the end: Kafka fetches in the background, so the first polls after
    a start can return nothing while the topic holds records (the gateway then refused valid
    tokens, and the notifier would have forgotten what it had delivered). The end offsets
    say where the end is.
    """
    ends = await reader.end_offsets()
    reached: dict[TopicPartition, int] = {}
    deadline = time.monotonic() + timeout_s
    applied = 0
    while any(reached.get(tp, 0) < end for tp, end in ends.items()):
        if time.monotonic() > deadline:
            log.warning("control topic not read to its end; going on", extra={"ends": str(ends)})
            break
        for record in await reader.poll(max_records=1000, timeout_s=0.2):
            applied += apply(record)
            reached[record.tp] = record.offset + 1
    return applied


async def read_new(reader: Consumer, apply: Apply) -> int:
    """Apply what has arrived since the last read, without waiting; returns how many applied."""
    applied = 0
    while records := await reader.poll(max_records=1000, timeout_s=0):
        applied += sum(apply(record) for record in records)
    return applied
