"""Rows whose sorting-key time is their receive time: a resend of them must be the same row.

The event tables are ReplacingMergeTrees sorted by ``(…, occurred_at, event_id)``: two rows
collapse only when the whole key matches. A client that names its event (Logister's
``uuid``; a Forge Logger request resent byte for byte derives the same ids) but sends no
time gets its receive time as ``occurred_at`` — and a resend arrives later, so it would be a
second row of the same id. ``typed_record`` marks such rows with ``AT_RECEIPT_HEADERS``; the
writer (``services.writer.resends``) gives a marked row the times of the row already stored
under its id, so the resend is that row again.

Only the kinds listed here can default a sorting-key time to the receive time; the
MessagePack kinds require their timestamps, and the other tables are sorted by id alone.
"""

from __future__ import annotations

from typing import Any

from forgeline.schemas.records import CHECK_IN, ERROR, GAME_EVENT, LOG, METRIC, SPAN, TRANSACTION, RecordKind

# The kinds whose sorting-key time may default to the receive time (spans: started_at, which
# defaults to occurred_at, which defaults to the receive time).
AT_RECEIPT_KINDS = (ERROR, LOG, METRIC, TRANSACTION, CHECK_IN, SPAN, GAME_EVENT)


def _sort_time(kind: RecordKind) -> str:
    types = dict(kind.columns)
    return next(name for name in kind.key if types[name] == "millis")


# kind → the time column in its table's sorting key.
SORT_TIME_COLUMNS: dict[RecordKind, str] = {kind: _sort_time(kind) for kind in AT_RECEIPT_KINDS}
# kind → the sorting-key column after project_id (environment, or a span's trace): the lookup
# filters on it too, so it reads only the key ranges of the marked rows.
NARROWING_COLUMNS: dict[RecordKind, str] = {kind: kind.key[1] for kind in AT_RECEIPT_KINDS}
RECEIVED_COLUMN = "received_at"
AT_RECEIPT_HEADER = "forgeline-time"
AT_RECEIPT = b"received"


def at_receipt(kind: RecordKind, row: dict[str, Any]) -> bool:
    """Whether ``row``'s sorting-key time is its receive time (defaulted, or sent equal to it:
    either way a later copy of the row would sort elsewhere)."""
    column = SORT_TIME_COLUMNS.get(kind)
    return column is not None and row.get(column) == row.get(RECEIVED_COLUMN)
