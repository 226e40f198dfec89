"""Span times a span_tree row cannot hold are bad data at parse time, not a failed flush."""

from __future__ import annotations

import pytest

from forgeline.processing.deadletter import InvalidMessage
from tests.unit.spans.test_steps import T0, span


@pytest.mark.unit
@pytest.mark.parametrize(
    "extra",
    [{"started_at": 10**15}, {"ended_at": 10**15}, {"duration_ms": 1e300}, {"received_at": -(10**14)}],
    ids=["started", "ended", "duration", "received"],
)
def test_out_of_range_times_are_rejected(extra: dict[str, object]) -> None:
    # Before: accepted, and the flush's datetime conversion raised on every restart (the trace
    # is rebuilt from the log), so the span assembler could never get past it.
    with pytest.raises(InvalidMessage) as raised:
        span("s", **extra)
    assert raised.value.reason == "bad_typed_record"


@pytest.mark.unit
def test_times_at_the_edges_are_kept() -> None:
    assert span("s", started_at=T0, received_at=0).received_ms == 0
