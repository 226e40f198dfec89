"""Property-based bad input for the game routes (issue 4): the Foundation's fuzz, extended.

MessagePack bombs (declared-huge arrays, maps, strings and bins, deep nesting, ext types,
timestamps, non-string keys, truncations) and arbitrary values in every field of the seed's
items: the answer is 200 for a genuinely valid batch and a 4xx otherwise, never a 500, and a
refused batch leaves the raw log as it was. The Forge routes get arbitrary JSON the same way.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

import httpx
import msgpack
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.conftest import GatewayHarness
from tests.contract.forge_support import new_session
from tests.contract.test_msgpack_routes import funnel, gameplay, player, realtime

pytestmark = pytest.mark.contract

FUZZ = settings(
    max_examples=30,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
MSGPACK_PATHS = st.sampled_from(["/api/events", "/api/player", "/api/funnel", "/api/realtime"])


@pytest.fixture
def gw(make_gateway: Callable[..., GatewayHarness]) -> GatewayHarness:
    return make_gateway(msgpack_rate_limit_requests=10**9, forge_rate_limit_requests=10**9)


def _send(gw: GatewayHarness, path: str, body: bytes) -> httpx.Response:
    headers = {"x-public-token": gw.tokens["msgpack_public_token"], "Content-Type": "application/msgpack"}
    return gw.client.post(path, content=body, headers=headers)


def _check(gw: GatewayHarness, topic: str, send: Callable[[], httpx.Response], ok: int) -> int:
    before = len(gw.raw(topic))
    response = send()
    status = response.status_code
    assert status == ok or 400 <= status < 500, (status, response.text)
    assert response.headers["content-type"].startswith("application/json")
    if status != ok:
        assert len(gw.raw(topic)) == before, f"refused with {status} but the raw log grew"
    return status


# --- strategies ------------------------------------------------------------------------------

SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats()
    | st.text(max_size=30)
    | st.binary(max_size=30)
    | st.builds(msgpack.ExtType, st.integers(0, 127), st.binary(max_size=16))
    | st.builds(msgpack.Timestamp, st.integers(0, 2**34 - 1), st.integers(0, 999_999_999))
)
KEYS = st.text(max_size=12) | st.integers(-5, 5) | st.binary(max_size=4) | st.none()
VALUES = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(KEYS, children, max_size=4),
    max_leaves=16,
)


def _bomb(kind: str, size: int, tail: bytes) -> bytes:
    """A header that declares far more than follows (the decoder must not allocate it)."""
    headers = {
        "array32": b"\xdd" + struct.pack(">I", size),
        "map32": b"\xdf" + struct.pack(">I", size),
        "str32": b"\xdb" + struct.pack(">I", size),
        "bin32": b"\xc6" + struct.pack(">I", size),
        "ext32": b"\xc9" + struct.pack(">I", size) + b"\x05",
        "array16": b"\xdc" + struct.pack(">H", size & 0xFFFF),
    }
    return headers[kind] + tail


BOMBS = st.builds(
    _bomb,
    st.sampled_from(["array32", "map32", "str32", "bin32", "ext32", "array16"]),
    st.integers(min_value=1, max_value=2**32 - 1),
    st.binary(max_size=64),
)
DEEP = st.builds(lambda depth, leaf: b"\x91" * depth + leaf, st.integers(1, 20_000), st.sampled_from([b"\xc0", b""]))
MAP_DEEP = st.builds(lambda depth: b"\x81\xa1k" * depth + b"\xc0", st.integers(1, 20_000))
ITEMS = [player, funnel, gameplay, realtime]


# --- properties ------------------------------------------------------------------------------


@FUZZ
@given(path=MSGPACK_PATHS, body=BOMBS | DEEP | MAP_DEEP | st.binary(max_size=200))
@example(path="/api/events", body=b"\xdd\xff\xff\xff\xff")
@example(path="/api/events", body=b"\x91" * 100_000 + b"\xc0")
@example(path="/api/events", body=b"\xc7\x0c\xff" + b"\xff" * 12)  # timestamp96, nanoseconds out of range
def test_msgpack_bombs_and_random_bytes_are_4xx(gw: GatewayHarness, path: str, body: bytes) -> None:
    assert 400 <= _check(gw, "raw.msgpack", lambda: _send(gw, path, body), ok=-1) < 500


@FUZZ
@given(path=MSGPACK_PATHS, value=VALUES)
def test_any_msgpack_document_is_200_or_4xx(gw: GatewayHarness, path: str, value: Any) -> None:
    body = msgpack.packb(value, use_bin_type=True, strict_types=False)
    _check(gw, "raw.msgpack", lambda: _send(gw, path, body), ok=200)


@FUZZ
@given(
    make=st.sampled_from(ITEMS),
    field=st.sampled_from(
        [
            "app_id",
            "event_name",
            "funnel_step_name",
            "player_id",
            "session_id",
            "level_id",
            "position",
            "positions",
            "fps",
            "custom_data",
            "hardware",
            "timestamp",
            "timestamp_start",
            "timestamp_end",
            "status",
            "build_id",
        ]
    ),
    value=VALUES,
    copies=st.integers(1, 3),
)
def test_any_value_in_any_item_field_is_200_or_400(
    gw: GatewayHarness, make: Callable[[str], dict[str, Any]], field: str, value: Any, copies: int
) -> None:
    item = {**make(gw.tokens["msgpack_app_id"]), field: value}
    batch = [make(gw.tokens["msgpack_app_id"]) for _ in range(copies - 1)] + [item]
    body = msgpack.packb(batch, use_bin_type=True, strict_types=False)
    before = len(gw.raw("raw.msgpack"))
    status = _check(gw, "raw.msgpack", lambda: _send(gw, "/api/events", body), ok=200)
    assert status in (200, 400, 403), status
    if status == 200:
        assert len(gw.raw("raw.msgpack")) == before + copies  # all of the batch, one record per item


@FUZZ
@given(
    truncate=st.integers(min_value=1, max_value=400),
    make=st.sampled_from(ITEMS),
)
def test_truncated_batches_are_400_and_store_nothing(
    gw: GatewayHarness, truncate: int, make: Callable[[str], dict[str, Any]]
) -> None:
    body = msgpack.packb([make(gw.tokens["msgpack_app_id"])] * 3, use_bin_type=True)
    cut = body[: max(1, len(body) - truncate)]
    assert _check(gw, "raw.msgpack", lambda: _send(gw, "/api/events", cut), ok=-1) == 400


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=16,
)
FORGE_PATHS = st.sampled_from(["/v1/ingest/sessions", "/v1/ingest/events", "/v1/ingest/reports", "/v1/ingest/uploads"])


@FUZZ
@given(path=FORGE_PATHS, doc=JSON_VALUES)
def test_any_json_on_a_forge_route_is_201_or_4xx(gw: GatewayHarness, path: str, doc: Any) -> None:
    headers = {"Authorization": f"Bearer {gw.tokens['forge_token']}"}
    _check(gw, "raw.forge", lambda: gw.client.post(path, json=doc, headers=headers), ok=201)


@FUZZ
@given(
    path=FORGE_PATHS,
    field=st.sampled_from(
        ["sessionId", "type", "timestamp", "severity", "properties", "title", "uploadIds", "export", "files", "build"]
    ),
    value=JSON_VALUES,
)
def test_any_value_in_a_forge_field_is_201_or_400(gw: GatewayHarness, path: str, field: str, value: Any) -> None:
    session = new_session(gw)
    base: dict[str, Any] = {
        "/v1/ingest/sessions": {"build": {"version": "1.0", "platform": "windows"}},
        "/v1/ingest/events": {"sessionId": session, "type": "jump"},
        "/v1/ingest/reports": {
            "sessionId": session,
            "title": "t",
            "description": "d",
            "severity": "low",
            "reporterType": "qa",
        },
        "/v1/ingest/uploads": {"filename": "a.png", "contentType": "image/png", "size": 10, "type": "screenshot"},
    }[path]
    headers = {"Authorization": f"Bearer {gw.tokens['forge_token']}"}
    status = _check(gw, "raw.forge", lambda: gw.client.post(path, json={**base, field: value}, headers=headers), 201)
    # 403: a well-formed id that is not one of this project's sessions or uploads.
    assert status in (201, 400) or (status == 403 and field in ("sessionId", "uploadIds")), status
