"""Raw payload → typed records. Pure: no I/O, same output for the same input (replay-safe).

One module per family: ``logister.py`` (raw.logister) and ``game.py`` (raw.forge,
raw.msgpack); partition keys of the typed topics in ``keys.py``.

Every raw topic has one splitter with one signature (``Splitter``): a raw record (one item,
or a whole accepted request) → its typed records and the items that failed, each as the
record to dead-letter on its own. A splitter raises only when the record as a whole cannot
be read (it is then dead-lettered whole).
"""

from __future__ import annotations

from collections.abc import Callable

from forgeline.bus.port import OutgoingRecord, Record
from forgeline.bus.topics import RAW_FORGE, RAW_LOGISTER, RAW_MSGPACK, TICK_HEADER, TYPED_CHECKINS
from services.normalizer.failed import FailedItem, Split
from services.normalizer.game import split_forge, split_msgpack
from services.normalizer.game_errors import game_error
from services.normalizer.logister import split_logister

Splitter = Callable[[Record], Split]
NORMALIZERS: dict[str, Splitter] = {RAW_LOGISTER: split_logister, RAW_FORGE: split_forge, RAW_MSGPACK: split_msgpack}


def normalize(record: Record) -> tuple[list[OutgoingRecord], list[FailedItem], int]:
    """A raw record's typed records (each followed by the typed error it also is when it is a
    game crash: one inbox for game and backend errors, ``services/normalizer/game_errors.py``),
    its failed items, and how many items it held (what the dead-letter limit counts)."""
    typed, failed = NORMALIZERS[record.topic](record)
    out: list[OutgoingRecord] = []
    for one in typed:
        out.append(one)
        error = game_error(one)
        if error is not None:
            out.append(error)
    return out, failed, max(len(typed) + len(failed), 1)


def forward_tick(record: Record, checkin_partitions: int) -> list[OutgoingRecord]:
    """A raw stream-clock tick → one tick per ``typed.checkins`` partition, tagged with the
    raw partition it came from (the monitor evaluator's clock needs both; see
    ``services/monitors/steps.py``)."""
    headers = ((TICK_HEADER, b"1"), ("source_partition", str(record.partition).encode()))
    return [
        OutgoingRecord(TYPED_CHECKINS, record.value, headers=headers, partition=q) for q in range(checkin_partitions)
    ]
