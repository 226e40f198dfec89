"""Raw payload → typed records. Pure: no I/O, same output for the same input (replay-safe).

One module per family: ``logister.py`` (raw.logister) and ``game.py`` (raw.forge,
raw.msgpack); partition keys of the typed topics in ``keys.py``.
"""

from __future__ import annotations

from forgeline.bus.port import OutgoingRecord, Record
from forgeline.bus.topics import RAW_FORGE, RAW_LOGISTER, RAW_MSGPACK, TICK_HEADER, TYPED_CHECKINS
from services.normalizer.game import normalize_forge, normalize_msgpack
from services.normalizer.game_errors import game_error
from services.normalizer.logister import normalize_logister

NORMALIZERS = {RAW_LOGISTER: normalize_logister, RAW_FORGE: normalize_forge, RAW_MSGPACK: normalize_msgpack}


def normalize(record: Record) -> list[OutgoingRecord]:
    """A raw record's typed record, and the typed error it also is when it is a game crash
    (one inbox for game and backend errors: ``services/normalizer/game_errors.py``)."""
    typed = NORMALIZERS[record.topic](record)
    error = game_error(typed)
    return [typed] if error is None else [typed, error]


def forward_tick(record: Record, checkin_partitions: int) -> list[OutgoingRecord]:
    """A raw stream-clock tick → one tick per ``typed.checkins`` partition, tagged with the
    raw partition it came from (the monitor evaluator's clock needs both; see
    ``services/monitors/steps.py``)."""
    headers = ((TICK_HEADER, b"1"), ("source_partition", str(record.partition).encode()))
    return [
        OutgoingRecord(TYPED_CHECKINS, record.value, headers=headers, partition=q) for q in range(checkin_partitions)
    ]
