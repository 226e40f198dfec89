"""One raw record per accepted game request (envelope version 2): the split path stores exactly
the rows the one-record-per-item path stored, a refused batch appends nothing, and version-1
records still normalize as before. Through the real gateway app; the normalizer's steps."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import msgpack
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from forgeline.bus.embedded import EmbeddedBus
from forgeline.bus.port import Record
from forgeline.bus.topics import RAW_FORGE, RAW_MSGPACK
from forgeline.schemas import msgpack as msgpack_schema
from forgeline.schemas.game_raw import v1_views
from tests.conftest import GatewayHarness, read_all
from tests.property.game_strategies import (
    forge_batches,
    msgpack_batches,
    msgpack_items,
    record,
    session_bodies,
    session_ids,
    typed_of,
    v1_forge_value,
    v1_msgpack_value,
)

pytestmark = pytest.mark.contract

PROPERTY = settings(
    max_examples=25,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.fixture
def gateway(make_gateway: Callable[..., GatewayHarness]) -> GatewayHarness:
    return make_gateway(msgpack_rate_limit_requests=10**9, forge_rate_limit_requests=10**9)


def _seen(bus: EmbeddedBus, topic: str) -> set[tuple[int, int]]:
    return {(r.partition, r.offset) for r in read_all(bus, topic)}


def _new(bus: EmbeddedBus, topic: str, before: set[tuple[int, int]]) -> list[Record]:
    """The records appended since ``before`` (read_all orders by partition, not by time)."""
    return [r for r in read_all(bus, topic) if (r.partition, r.offset) not in before]


def _tenancy(gw: GatewayHarness) -> dict[str, str]:
    return {
        "organisation_id": gw.tokens["organisation_id"],
        "project_id": gw.tokens["project_id"],
        "environment": gw.tokens["environment"],
    }


def _token_id(gw: GatewayHarness, views: list[dict[str, Any]]) -> str:
    token_ids = {view["token_id"] for view in views}
    assert len(token_ids) == 1 and token_ids != {""}
    return token_ids.pop()


# --- Forge Logger ------------------------------------------------------------------------------


@PROPERTY
@given(data=st.data())
def test_a_forge_batch_is_one_record_and_stores_the_rows_of_one_record_per_event(
    gateway: GatewayHarness, data: st.DataObject
) -> None:
    project = gateway.tokens["project_id"]
    batch = data.draw(forge_batches(project, session_ids(project)))
    as_batch = len(batch) > 1 or data.draw(st.booleans())
    body = orjson.dumps(batch if as_batch else batch[0])
    before = _seen(gateway.bus, RAW_FORGE)
    headers = {"Authorization": f"Bearer {gateway.tokens['forge_token']}", "Content-Type": "application/json"}
    response = gateway.client.post("/v1/ingest/events", content=body, headers=headers)
    assert response.status_code == 201, response.text
    event_ids = response.json()["eventIds"]
    assert len(event_ids) == len(batch) == response.json()["accepted"]

    new = _new(gateway.bus, RAW_FORGE, before)
    assert len(new) == 1, "one accepted request, one raw record"
    assert orjson.loads(new[0].value)["v"] == 2
    views = v1_views(RAW_FORGE, new[0].value)
    assert [v["id"] for v in views] == event_ids, "the record carries the ids the response promised"
    received_at = int(round(gateway.clock.time(), 3) * 1000)
    assert {v["received_at"] for v in views} == {received_at}

    token_id = _token_id(gateway, views)
    v1 = [
        record(RAW_FORGE, v1_forge_value(_tenancy(gateway), token_id, received_at, event_id, item))
        for event_id, item in zip(event_ids, batch, strict=True)
    ]
    split = typed_of(new)
    assert len(split) >= len(batch)
    assert split == typed_of(v1), "same ids, same cells, same order as one record per event"


@PROPERTY
@given(body=session_bodies())
def test_a_session_is_one_record_and_stores_the_build_and_session_of_two_records(
    gateway: GatewayHarness, body: dict[str, Any]
) -> None:
    before = _seen(gateway.bus, RAW_FORGE)
    headers = {"Authorization": f"Bearer {gateway.tokens['forge_token']}"}
    response = gateway.client.post("/v1/ingest/sessions", content=orjson.dumps(body), headers=headers)
    assert response.status_code == 201, response.text
    new = _new(gateway.bus, RAW_FORGE, before)
    assert len(new) == 1, "one accepted request, one raw record"
    views = v1_views(RAW_FORGE, new[0].value)
    assert [(v["route"], v["id"]) for v in views] == [
        ("build", response.json()["buildId"]),
        ("session", response.json()["sessionId"]),
    ]
    received_at = int(round(gateway.clock.time(), 3) * 1000)
    token_id = _token_id(gateway, views)
    v1 = [
        record(RAW_FORGE, v1_forge_value(_tenancy(gateway), token_id, received_at, view["id"], body, view["route"]))
        for view in views
    ]
    assert typed_of(new) == typed_of(v1), "the build and the session rows of two version-1 records"


BAD_FORGE_EVENTS = [
    lambda e: {k: v for k, v in e.items() if k != "type"},
    lambda e: {**e, "timestamp": "yesterday"},
    lambda e: {**e, "severity": "apocalyptic"},
    lambda e: {**e, "sessionId": "not-a-uuid"},
    lambda e: {**e, "properties": [1, 2]},
    lambda e: "not an object",
]


@PROPERTY
@given(data=st.data())
def test_a_forge_batch_with_one_bad_event_names_its_index_and_appends_nothing(
    gateway: GatewayHarness, data: st.DataObject
) -> None:
    project = gateway.tokens["project_id"]
    batch = data.draw(forge_batches(project, session_ids(project)))
    index = data.draw(st.integers(0, len(batch) - 1))
    batch[index] = data.draw(st.sampled_from(BAD_FORGE_EVENTS))(batch[index])
    before = _seen(gateway.bus, RAW_FORGE)
    headers = {"Authorization": f"Bearer {gateway.tokens['forge_token']}"}
    response = gateway.client.post("/v1/ingest/events", content=orjson.dumps(batch), headers=headers)
    assert response.status_code == 400, response.text
    details = response.json()["details"]
    assert details and {d["index"] for d in details} == {index}
    assert _new(gateway.bus, RAW_FORGE, before) == []


@PROPERTY
@given(data=st.data())
def test_a_forge_batch_citing_a_foreign_session_is_refused_whole(gateway: GatewayHarness, data: st.DataObject) -> None:
    project = gateway.tokens["project_id"]
    batch = data.draw(forge_batches(project, session_ids(project)))
    index = data.draw(st.integers(0, len(batch) - 1))
    batch[index] = {**batch[index], "sessionId": session_ids("another-project", 1)[0]}
    before = _seen(gateway.bus, RAW_FORGE)
    headers = {"Authorization": f"Bearer {gateway.tokens['forge_token']}"}
    response = gateway.client.post("/v1/ingest/events", content=orjson.dumps(batch), headers=headers)
    assert response.status_code == 403, response.text
    assert {d["index"] for d in response.json()["details"]} == {index}
    assert _new(gateway.bus, RAW_FORGE, before) == []


# --- MessagePack -------------------------------------------------------------------------------


def _post_msgpack(gw: GatewayHarness, body: bytes) -> Any:
    headers = {"x-public-token": gw.tokens["msgpack_public_token"], "Content-Type": "application/msgpack"}
    return gw.client.post("/api/events", content=body, headers=headers)


@PROPERTY
@given(data=st.data())
def test_a_msgpack_batch_is_one_record_and_stores_the_rows_of_one_record_per_item(
    gateway: GatewayHarness, data: st.DataObject
) -> None:
    app_id = gateway.tokens["msgpack_app_id"]
    batch = data.draw(msgpack_batches(app_id))
    single = len(batch) == 1 and data.draw(st.booleans())
    body = msgpack.packb(batch[0] if single else batch, use_bin_type=True)
    before = _seen(gateway.bus, RAW_MSGPACK)
    response = _post_msgpack(gateway, body)
    assert response.status_code == 200, response.text

    new = _new(gateway.bus, RAW_MSGPACK, before)
    assert len(new) == 1, "one accepted request, one raw record"
    views = v1_views(RAW_MSGPACK, new[0].value)
    digest = hashlib.sha256(body).hexdigest()
    project = gateway.tokens["project_id"]
    ids = [str(msgpack_schema.event_id(project, app_id, digest, n)) for n in range(len(batch))]
    assert [v["id"] for v in views] == ids, "each item keeps the id it had as a record of its own"
    received_at = views[0]["received_at"]
    token_id = _token_id(gateway, views)
    v1 = [
        record(RAW_MSGPACK, v1_msgpack_value(_tenancy(gateway), app_id, token_id, received_at, event_id, item))
        for event_id, item in zip(ids, msgpack.unpackb(msgpack.packb(batch)), strict=True)
    ]
    assert typed_of(new) == typed_of(v1), "same ids, same cells, same order as one record per item"


BAD_MSGPACK_ITEMS = [
    lambda i: {k: v for k, v in i.items() if k != "player_id"},
    lambda i: {**i, "timestamp": "soon", "timestamp_start": "soon"},
    lambda i: {
        k: v for k, v in i.items() if k not in ("event_name", "funnel_step_name", "positions", "timestamp_start")
    },
    lambda i: [i],
]


@PROPERTY
@given(data=st.data())
def test_a_msgpack_batch_with_one_bad_item_is_refused_whole(gateway: GatewayHarness, data: st.DataObject) -> None:
    app_id = gateway.tokens["msgpack_app_id"]
    batch = data.draw(msgpack_batches(app_id, max_size=10))
    index = data.draw(st.integers(0, len(batch) - 1))
    foreign = data.draw(st.booleans())
    batch[index] = (
        {**batch[index], "app_id": "another-app"}
        if foreign
        else data.draw(st.sampled_from(BAD_MSGPACK_ITEMS))(batch[index])
    )
    before = _seen(gateway.bus, RAW_MSGPACK)
    response = _post_msgpack(gateway, msgpack.packb(batch, use_bin_type=True))
    assert response.status_code == (403 if foreign else 400), response.text
    assert _new(gateway.bus, RAW_MSGPACK, before) == []


@PROPERTY
@given(item=msgpack_items("app"))
def test_a_version_1_record_normalizes_as_before(item: dict[str, Any]) -> None:
    tenancy = {"organisation_id": "org", "project_id": "proj", "environment": "production"}
    value = v1_msgpack_value(tenancy, "app", "tok", 1_775_000_000_000, "0" * 8 + "-0000-4000-8000-" + "0" * 12, item)
    rows = typed_of([record(RAW_MSGPACK, value)])
    assert len(rows) == 1
    row = orjson.loads(rows[0][2])
    assert (row["event_id"], row["app_id"], row["player_id"]) == (
        "00000000-0000-4000-8000-000000000000",
        "app",
        item["player_id"],
    )
