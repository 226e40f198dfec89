"""Partition keys of the typed topics: which records the next stage must see in order."""

from __future__ import annotations

from typing import Any

from forgeline.grouping import group_fingerprint, group_key
from forgeline.schemas.records import (
    CHECK_IN,
    DEPLOYMENT,
    ERROR,
    GAME_EVENT,
    LEVEL_MODEL,
    METRIC,
    PLAYER,
    SESSION,
    SPAN,
    TRANSACTION,
    RecordKind,
)


def partition_key(kind: RecordKind, row: dict[str, Any]) -> bytes:
    """The key of the next stage (SPEC 6): fingerprint for errors, trace for spans, monitor for check-ins."""
    if kind is ERROR:
        # The error grouper's rule (masked numbers/ids): one group, one partition, one owner.
        fp = group_fingerprint(row["fingerprint"], row["message"], row["exception_class"])
        return group_key(row["project_id"], fp)
    elif kind is SPAN:
        value = f"{row['project_id']}/{row['trace_id']}"
    elif kind is CHECK_IN:
        value = f"{row['project_id']}/{row['environment']}/{row['slug']}"
    elif kind is METRIC:
        value = f"{row['project_id']}/{row['name']}"
    elif kind is TRANSACTION:
        value = f"{row['project_id']}/{row['transaction_name']}"
    elif kind is DEPLOYMENT:
        value = f"{row['project_id']}/{row['release']}"
    elif kind is SESSION or kind is GAME_EVENT:
        value = row["session_id"]  # SPEC 6: session for game events
    elif kind is PLAYER:
        value = f"{row['app_id']}/{row['player_id']}"
    elif kind is LEVEL_MODEL:
        value = row["model_id"]  # its own id: a model has no session
    elif "app_id" in row:
        value = f"{row['app_id']}/{row['session_id']}"
    elif "event_id" not in row:
        value = str(row[kind.columns[0][0]])  # builds, reports, uploads: their own id
    else:
        value = row["event_id"]
    return value.encode()
