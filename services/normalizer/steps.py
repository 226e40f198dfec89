"""Raw payload → typed records. Pure: no I/O, same output for the same input (replay-safe).

One module per family: ``logister.py`` (raw.logister) and ``game.py`` (raw.forge,
raw.msgpack); partition keys of the typed topics in ``keys.py``.
"""

from __future__ import annotations

from collections.abc import Callable

from forgeline.bus.port import OutgoingRecord, Record
from forgeline.bus.topics import RAW_FORGE, RAW_LOGISTER, RAW_MSGPACK, TICK_HEADER, TYPED_CHECKINS
from services.normalizer.game import split_forge, split_msgpack
from services.normalizer.game_errors import game_error
from services.normalizer.logister import normalize_logister

# A step gives one typed record, or several (a raw record that carries a whole request).
Step = Callable[[Record], OutgoingRecord | list[OutgoingRecord]]
NORMALIZERS: dict[str, Step] = {RAW_LOGISTER: normalize_logister, RAW_FORGE: split_forge, RAW_MSGPACK: split_msgpack}


def normalize(record: Record) -> list[OutgoingRecord]:
    """A raw record's typed record, and the typed error it also is when it is a game crash
    (one inbox for game and backend errors: ``services/normalizer/game_errors.py``)."""
    produced = NORMALIZERS[record.topic](record)
    out: list[OutgoingRecord] = []
    for typed in produced if isinstance(produced, list) else [produced]:
        out.append(typed)
        error = game_error(typed)
        if error is not None:
            out.append(error)
    return out


def forward_tick(record: Record, checkin_partitions: int) -> list[OutgoingRecord]:
    """A raw stream-clock tick → one tick per ``typed.checkins`` partition, tagged with the
    raw partition it came from (the monitor evaluator's clock needs both; see
    ``services/monitors/steps.py``)."""
    headers = ((TICK_HEADER, b"1"), ("source_partition", str(record.partition).encode()))
    return [
        OutgoingRecord(TYPED_CHECKINS, record.value, headers=headers, partition=q) for q in range(checkin_partitions)
    ]
