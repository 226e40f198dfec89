"""Whatever body the compiled MessagePack path accepts, the normalizer can unpack.

The gateway stores an accepted body as sent (one record per request) and the normalizer
unpacks it again with the full validator's rules (no extension types, string map keys): a
body the gateway answered 200 for and the normalizer then refused would be lost events.
"""

from __future__ import annotations

import base64
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from forgeline.schemas.game_raw import unpack_items
from forgeline.schemas.game_structs import msgpack_items

pytestmark = pytest.mark.unit

BASE = {"event_name": "Jump", "app_id": "A", "player_id": "p", "session_id": "s", "timestamp": "2026-02-12T10:00:00Z"}
FIELDS = ["hardware", "custom_data", "position", "fps", "level_id", "status", "region", "input_method"]
LEAVES = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=8)
    | st.binary(max_size=8)
    | st.builds(msgpack.ExtType, st.integers(0, 127), st.binary(max_size=8))
)
VALUES = st.recursive(
    LEAVES,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4) | st.integers(0, 9), inner, max_size=3)
    ),
    max_leaves=8,
)


def _accepted(doc: dict[str, Any]) -> bytes | None:
    body = msgpack.packb([doc], use_bin_type=True)
    return body if msgpack_items(body, "A", 32, 1000) is not None else None


@pytest.mark.parametrize(
    "value",
    [{"k": msgpack.ExtType(45, b"x")}, {"k": {1: 2}}, {"k": [1, {2: 3}]}],
    ids=["ext", "int-key", "nested-int-key"],
)
def test_maps_the_unpacker_refuses_are_left_to_the_full_validator(value: dict[str, Any]) -> None:
    # hardware on a gameplay event: a field no rule of that kind reads.
    assert _accepted({**BASE, "hardware": value}) is None
    assert _accepted({**BASE, "custom_data": value}) is None


@settings(max_examples=300, deadline=None)
@given(field=st.sampled_from(FIELDS), value=VALUES)
def test_every_body_the_compiled_path_accepts_unpacks(field: str, value: Any) -> None:
    body = _accepted({**BASE, field: value})
    if body is not None:
        assert unpack_items(base64.b64encode(body).decode())
