"""Partition keys of the typed topics: which records the next stage must see in order.

Each kind declares its key columns (``RecordKind.partition_key``: the trace for spans, the
monitor for check-ins, the session for game events, …). Errors are keyed by their group
instead, so that one group has one partition and one owner in the error grouper.
"""

from __future__ import annotations

from typing import Any

from forgeline.grouping import group_fingerprint, group_key
from forgeline.schemas.records import ERROR, RecordKind, partition_key_of


def partition_key(kind: RecordKind, row: dict[str, Any]) -> bytes:
    if kind is ERROR:
        # The error grouper's rule (masked numbers/ids): one group, one partition, one owner.
        fp = group_fingerprint(row["fingerprint"], row["message"], row["exception_class"])
        return group_key(row["project_id"], fp)
    return partition_key_of(kind, row)
