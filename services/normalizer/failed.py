"""What a splitter returns for the items of a raw record that failed (``steps.Splitter``)."""

from __future__ import annotations

from typing import NamedTuple

from forgeline.bus.port import OutgoingRecord, Record


class FailedItem(NamedTuple):
    """One failed item of a raw record: what to dead-letter (the item as a raw record of its
    own, at its request's position: replayable once fixed), why, and its index in that
    record, the ``dead_letter_key`` that tells the dead letters of one request apart (they
    share the source offset, by which the dead_letters table is keyed)."""

    record: Record
    error: Exception
    key: str


# A raw record's typed records, in item order, and its failed items.
Split = tuple[list[OutgoingRecord], list[FailedItem]]
