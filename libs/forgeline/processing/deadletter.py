"""Dead letters: a record no step can process goes to ``dlq.<group>`` with its reason.

The original key and value are kept byte for byte; where it came from and why it
failed travel in headers, so the record can be inspected and replayed once fixed.
"""

from __future__ import annotations

import time

from forgeline.bus.port import OutgoingRecord, Record
from forgeline.bus.topics import dead_letter_topic


class InvalidMessage(Exception):
    """Raised by a step for a record that can never be processed (bad data, not a bug)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason  # a short fixed label, used in metrics
        self.detail = detail


def dead_letter(group: str, record: Record, error: InvalidMessage) -> OutgoingRecord:
    headers = (
        ("reason", error.reason.encode()),
        ("detail", error.detail.encode("utf-8", "replace")[:4000]),
        ("source_topic", record.topic.encode()),
        ("source_partition", str(record.partition).encode()),
        ("source_offset", str(record.offset).encode()),
        ("failed_at_ms", str(int(time.time() * 1000)).encode()),
    )
    return OutgoingRecord(dead_letter_topic(group), record.value, key=record.key, headers=headers)
