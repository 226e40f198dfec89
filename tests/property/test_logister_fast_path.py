"""The compiled fast path (forgeline.schemas.logister_fast) against the full validator.

- On events in the common shape it agrees exactly: it accepts what normalize_event accepts,
  with the same id, and leaves the rest to it; the row it builds (the normalizer's fast path)
  is normalize_event's row, cell for cell and in the same key order.
- On anything else, whatever it accepts the full path accepts too, with the same row.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from forgeline.schemas import logister
from forgeline.schemas.common import json_depth_exceeds
from forgeline.schemas.logister_fast import accepted_event_id, decode_line, event_row
from tests.property.logister_strategies import any_shape_event, common_shape_event, valid_event

pytestmark = pytest.mark.unit

PROPERTY = settings(max_examples=400, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
MAX_DEPTH = 32
RECEIVED_AT = datetime(2026, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)


def full_path(line: bytes, max_depth: int = MAX_DEPTH) -> tuple[uuid.UUID, dict[str, Any]] | None:
    """The id and row the gateway's full path gives a batch line, None when it refuses it (400 or 422)."""
    try:
        doc = orjson.loads(line)
        if json_depth_exceeds(doc, max_depth):
            return None
        raw = logister.extract_envelope(doc, logister.EVENT_ENVELOPES)
        identity = raw.get("uuid", raw.get("event_id"))
        if identity is None or identity == "":
            return None
        event_id = uuid.UUID(str(identity))
        ctx = logister.IngestContext(event_id, "org", "proj", "production", RECEIVED_AT)
        _, row = logister.normalize_event(raw, ctx)
    except (orjson.JSONDecodeError, logister.MissingEnvelope, logister.Invalid, ValueError):
        return None
    return event_id, row


def _line(event: dict[str, Any], identity: Any) -> bytes:
    # The standard library writes any integer (orjson stops at 64 bits): clients may send them.
    return json.dumps({"event": {"uuid": identity, **event}} if identity is not None else {"event": event}).encode()


@PROPERTY
@given(event=common_shape_event(), event_id=st.uuids(), spelling=st.sampled_from(["canonical", "upper", "hex"]))
def test_agrees_exactly_with_the_full_validator_on_the_common_shape(
    event: dict[str, Any], event_id: uuid.UUID, spelling: str
) -> None:
    identity = {"canonical": str(event_id), "upper": str(event_id).upper(), "hex": event_id.hex}[spelling]
    line = _line(event, identity)
    full = full_path(line)
    fast = accepted_event_id(line, MAX_DEPTH)
    assert (fast is not None) == (full is not None), (line, full)
    if full is not None:
        assert fast == full[0] == event_id
        assert_same_row(line, full[1])


def assert_same_row(line: bytes, full_row: dict[str, Any]) -> None:
    event = decode_line(line)
    assert event is not None
    body = orjson.loads(line)["event"]
    ctx = logister.IngestContext(uuid.UUID(full_row["event_id"]), "org", "proj", "production", RECEIVED_AT)
    _, row = event_row(event, body, ctx)
    assert list(row.items()) == list(full_row.items())


@PROPERTY
@given(
    event=st.one_of(any_shape_event(), valid_event()),
    identity=st.one_of(st.uuids().map(str), st.none(), st.text(max_size=5)),
)
@example(event={"event_type": "log", "message": "x", "context": {"n": 10**400}}, identity=str(uuid.uuid4()))
@example(event={"event_type": "log", "message": "x", "eventType": "span"}, identity=str(uuid.uuid4()))
def test_whatever_it_accepts_the_full_validator_accepts(event: dict[str, Any], identity: Any) -> None:
    line = _line(event, identity)
    fast = accepted_event_id(line, MAX_DEPTH)
    if fast is not None:
        full = full_path(line)
        assert full is not None, line
        assert full[0] == fast
        assert_same_row(line, full[1])


@given(event=valid_event())
@settings(max_examples=50, deadline=None, database=None)
def test_a_shallow_depth_limit_sends_every_line_to_the_full_path(event: dict[str, Any]) -> None:
    line = _line(event, str(uuid.uuid4()))
    assert accepted_event_id(line, 3) is None


def test_the_benchmark_event_takes_the_fast_path() -> None:
    # The shape logister-python sends for an error: were it to fall back, the fast path would be dead code.
    from services.bench import payloads

    event = orjson.loads(payloads.event_body())["event"]
    line = _line(event, str(uuid.uuid4()))
    assert accepted_event_id(line, MAX_DEPTH) is not None
    assert full_path(line) is not None
