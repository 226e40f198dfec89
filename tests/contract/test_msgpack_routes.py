"""MessagePack game analytics routes (SPEC 4.2): every route and status of the seed's table."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgpack
import orjson
import pytest
from starlette.testclient import TestClient

from forgeline.clock import FakeClock
from forgeline.config import Settings
from services.gateway.app import create_app
from tests.conftest import GatewayHarness, bootstrap

pytestmark = pytest.mark.contract

MSGPACK = {"Content-Type": "application/msgpack"}


def player(app_id: str) -> dict[str, Any]:
    return {
        "event_name": "Create_Player",
        "app_id": app_id,
        "build_id": "Win64_Shipping_1.0.2",
        "player_id": "player_uuid",
        "region": "EU-West",
        "hardware": {"gpu": "RTX 4090", "ram": "32GB"},
        "timestamp": "2026-02-12T10:00:00Z",
    }


def funnel(app_id: str) -> dict[str, Any]:
    return {
        "funnel_step_name": "Tutorial_Start",
        "app_id": app_id,
        "build_id": "Win64_Shipping_1.0.2",
        "player_id": "player_uuid",
        "session_id": "session_uuid",
        "level_id": "Training_Grounds",
        "timestamp": "2026-02-12T10:00:00Z",
    }


def gameplay(app_id: str) -> dict[str, Any]:
    return {
        "event_name": "Player_Jump",
        "app_id": app_id,
        "build_id": "Win64_Shipping_1.0.2",
        "player_id": "player_uuid",
        "session_id": "session_uuid",
        "level_id": "Level_1",
        "position": [10.5, 0.0, -5.2],
        "custom_data": {"weapon": "Sword", "ammo": 10},
        "input_method": "Gamepad",
        "timestamp": "2026-02-12T10:00:00Z",
    }


def realtime(app_id: str) -> dict[str, Any]:
    return {
        "app_id": app_id,
        "build_id": "Win64_Shipping_1.0.2",
        "player_id": "player_uuid",
        "session_id": "session_uuid",
        "status": "Gameplay",
        "input_method": "Gamepad",
        "fps": {"mean": 60, "low_5": 55, "low_1": 30},
        "positions": [10.0, 0.0, 1.0, 10.1, 0.0, 1.1, 10.2, 0.0, 1.2],
        "timestamp_start": "2026-02-12T10:00:00Z",
        "timestamp_end": "2026-02-12T10:00:05Z",
    }


def _headers(gw: GatewayHarness, **extra: str) -> dict[str, str]:
    return {"x-public-token": gw.tokens["msgpack_public_token"], **MSGPACK, **extra}


def _post(gw: GatewayHarness, body: Any, path: str = "/api/events", **headers: str) -> Any:
    gw.clock.advance(1)  # a fresh rate-limit window: these tests are not about the limit
    return gw.client.post(path, content=msgpack.packb(body, use_bin_type=True), headers=_headers(gw, **headers))


def _raw(gw: GatewayHarness) -> list[dict[str, Any]]:
    return gw.raw("raw.msgpack")


@pytest.mark.parametrize("make", [player, funnel, gameplay, realtime])
@pytest.mark.parametrize("path", ["/api/events", "/api/player", "/api/funnel", "/api/realtime"])
def test_every_seed_example_is_queued_on_every_route(gateway: GatewayHarness, make: Any, path: str) -> None:
    response = _post(gateway, make(gateway.tokens["msgpack_app_id"]), path)
    assert response.status_code == 200, response.text
    assert response.json() == {"status": "queued"}
    assert len(_raw(gateway)) == 1


def test_the_seed_python_example_as_written(gateway: GatewayHarness) -> None:
    event = gameplay(gateway.tokens["msgpack_app_id"])
    event["timestamp"] = datetime.now(UTC).isoformat()
    body = msgpack.packb(event, use_bin_type=True)
    headers = {"x-public-token": gateway.tokens["msgpack_public_token"], "Content-Type": "application/msgpack"}
    response = gateway.client.post("/api/events", content=body, headers=headers)
    assert (response.status_code, response.text) == (200, '{"status":"queued"}')


def test_a_batch_of_each_kind_is_one_raw_record_per_item(gateway: GatewayHarness) -> None:
    app = gateway.tokens["msgpack_app_id"]
    response = _post(gateway, [player(app), funnel(app), gameplay(app), realtime(app)])
    assert response.status_code == 200
    assert len(_raw(gateway)) == 4


def test_legacy_x_api_key_with_the_public_token(gateway: GatewayHarness) -> None:
    body = msgpack.packb(player(gateway.tokens["msgpack_app_id"]))
    headers = {"x-api-key": gateway.tokens["msgpack_public_token"], **MSGPACK}
    assert gateway.client.post("/api/events", content=body, headers=headers).status_code == 200


@pytest.mark.parametrize("token", [None, "mpk_pub_unknown", "forge", "secret"])
def test_missing_or_wrong_token_is_401(gateway: GatewayHarness, token: str | None) -> None:
    value = {"forge": gateway.tokens["forge_token"], "secret": gateway.tokens["msgpack_secret_key"]}.get(
        token or "", token
    )
    headers = {**MSGPACK, **({"x-public-token": value} if value else {})}
    body = msgpack.packb(player(gateway.tokens["msgpack_app_id"]))
    assert gateway.client.post("/api/events", content=body, headers=headers).status_code == 401


@pytest.mark.parametrize("content_type", ["application/json", "application/json; charset=utf-8", "text/json"])
def test_explicit_json_is_415(gateway: GatewayHarness, content_type: str) -> None:
    body = orjson.dumps(player(gateway.tokens["msgpack_app_id"]))
    response = gateway.client.post(
        "/api/events", content=body, headers=_headers(gateway, **{"Content-Type": content_type})
    )
    assert response.status_code == 415
    assert _raw(gateway) == []


def test_wrong_app_id_is_403_and_nothing_of_the_batch_is_stored(gateway: GatewayHarness) -> None:
    app = gateway.tokens["msgpack_app_id"]
    batch = [player(app), gameplay(app), {**funnel(app), "app_id": "72ab8f81-ef36-4712-a046-399a62b9afaa"}]
    response = _post(gateway, batch)
    assert response.status_code == 403
    assert _raw(gateway) == []


def test_one_bad_item_in_500_is_400_and_nothing_is_stored(gateway: GatewayHarness) -> None:
    app = gateway.tokens["msgpack_app_id"]
    batch = [gameplay(app) for _ in range(500)]
    batch[377] = {**gameplay(app), "position": [1.0, 2.0]}
    response = _post(gateway, batch)
    assert response.status_code == 400
    assert response.json()["details"] == [
        {"field": "position", "message": response.json()["details"][0]["message"], "index": 377}
    ]
    assert _raw(gateway) == []


def test_positions_not_a_multiple_of_three_is_400(gateway: GatewayHarness) -> None:
    bad = {**realtime(gateway.tokens["msgpack_app_id"]), "positions": [1.0, 2.0, 3.0, 4.0]}
    response = _post(gateway, bad)
    assert response.status_code == 400
    assert response.json()["details"][0]["field"] == "positions"


@pytest.mark.parametrize(
    "body",
    [b"", msgpack.packb([]), msgpack.packb({"player_id": "p"}), msgpack.packb("hello"), b"\xc1", msgpack.packb([1, 2])],
    ids=["empty", "empty-list", "no-kind", "string", "invalid-byte", "not-maps"],
)
def test_empty_or_unschemaed_payload_is_400(gateway: GatewayHarness, body: bytes) -> None:
    gateway.clock.advance(1)
    response = gateway.client.post("/api/events", content=body, headers=_headers(gateway))
    assert response.status_code == 400


def test_rate_limit_is_ten_per_second_per_source_ip(gateway: GatewayHarness) -> None:
    body = msgpack.packb(player(gateway.tokens["msgpack_app_id"]))
    gateway.clock.advance(1)
    codes = [gateway.client.post("/api/events", content=body, headers=_headers(gateway)).status_code for _ in range(11)]
    assert codes == [200] * 10 + [429]
    gateway.clock.advance(1)
    assert gateway.client.post("/api/events", content=body, headers=_headers(gateway)).status_code == 200


def test_forwarded_for_is_ignored_from_untrusted_peers(gateway: GatewayHarness) -> None:
    body = msgpack.packb(player(gateway.tokens["msgpack_app_id"]))
    gateway.clock.advance(1)
    codes = [
        gateway.client.post(
            "/api/events", content=body, headers=_headers(gateway, **{"X-Forwarded-For": f"10.0.0.{n}"})
        ).status_code
        for n in range(11)
    ]
    assert codes[-1] == 429


def test_forwarded_for_is_honoured_from_a_trusted_proxy(tmp_path: Path) -> None:
    bus, tokens = bootstrap(tmp_path)
    settings = Settings(data_dir=tmp_path, trusted_proxies=("10.1.1.0/24",))
    app = create_app(settings, bus, FakeClock())
    body = msgpack.packb(player(tokens["msgpack_app_id"]))
    headers = {"x-public-token": tokens["msgpack_public_token"], **MSGPACK}
    with TestClient(app, client=("10.1.1.1", 50000)) as proxied:
        codes = [
            proxied.post(
                "/api/events", content=body, headers={**headers, "X-Forwarded-For": f"192.0.2.{n}"}
            ).status_code
            for n in range(11)
        ]
        assert codes == [200] * 11
        same = [
            proxied.post("/api/events", content=body, headers={**headers, "X-Forwarded-For": "192.0.2.99"})
            for _ in range(11)
        ]
        assert [r.status_code for r in same][-1] == 429


def test_sql_select_is_501_after_auth(gateway: GatewayHarness) -> None:
    unauth = gateway.client.post("/api/sql/select", json={"sql": "SELECT 1"})
    assert unauth.status_code == 401
    response = gateway.client.post(
        "/api/sql/select", json={"sql": "SELECT 1"}, headers={"x-api-key": gateway.tokens["msgpack_secret_key"]}
    )
    assert (response.status_code, response.json()) == (501, {"error": "sql_unavailable"})


@pytest.mark.parametrize(
    "body",
    [
        b"\xdd\xff\xff\xff\xff",  # array of 4 billion, 5 bytes
        b"\xdf\xff\xff\xff\xff",  # map of 4 billion
        b"\x91" * 5000 + b"\xc0",  # nesting 5000 deep
        msgpack.packb(msgpack.ExtType(42, b"boom")),
        msgpack.packb({"app_id": b"binary"}, use_bin_type=True),
        msgpack.packb({1: "int key"}, strict_types=False),
    ],
    ids=["huge-array", "huge-map", "deep", "ext", "bin", "int-key"],
)
def test_msgpack_bombs_are_4xx_never_500(gateway: GatewayHarness, body: bytes) -> None:
    gateway.clock.advance(1)
    response = gateway.client.post("/api/events", content=body, headers=_headers(gateway))
    assert 400 <= response.status_code < 500, response.text


# --- POST /api/models -------------------------------------------------------------------------


def _model(gw: GatewayHarness, key: str | None, data: bytes = b"model-bytes", **fields: str) -> Any:
    gw.clock.advance(1)
    form = {"app_name": "default-game", "level_name": "Level_1", **fields}
    headers = {"x-api-key": key} if key else {}
    return gw.client.post(
        "/api/models", data=form, files={"model_file": ("level1.glb", data, "model/gltf-binary")}, headers=headers
    )


def test_model_upload_with_the_secret_key_is_stored_and_queued(gateway: GatewayHarness) -> None:
    data = bytes(range(256)) * 100
    response = _model(gateway, gateway.tokens["msgpack_secret_key"], data)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "queued" and body["size_bytes"] == len(data)
    assert body["sha256"] == hashlib.sha256(data).hexdigest()
    record = [r for r in _raw(gateway) if r.get("route") == "model"][0]
    stored = (gateway.settings.data_dir / "blobs" / record["body"]["storage_key"]).read_bytes()
    assert stored == data


def test_model_upload_with_bearer_secret_is_accepted(gateway: GatewayHarness) -> None:
    gateway.clock.advance(1)
    response = gateway.client.post(
        "/api/models",
        data={"app_name": "default-game", "level_name": "L"},
        files={"model_file": ("m.bin", b"x", "application/octet-stream")},
        headers={"Authorization": f"Bearer {gateway.tokens['msgpack_secret_key']}"},
    )
    assert response.status_code == 200


def test_model_upload_with_the_public_token_is_403(gateway: GatewayHarness) -> None:
    assert _model(gateway, gateway.tokens["msgpack_public_token"]).status_code == 403
    assert _raw(gateway) == []


def test_model_upload_without_a_key_is_401(gateway: GatewayHarness) -> None:
    assert _model(gateway, None).status_code == 401
    assert _model(gateway, "mpk_sec_nope").status_code == 401


def test_model_upload_for_another_app_is_403(gateway: GatewayHarness) -> None:
    response = _model(gateway, gateway.tokens["msgpack_secret_key"], app_name="other-game")
    assert response.status_code == 403
    # The key's holder is told the name to send (also in bootstrap-tokens.json).
    assert gateway.tokens["msgpack_app_name"] == "default-game"
    assert "'default-game'" in response.json()["message"]


def test_model_upload_missing_fields_is_400(gateway: GatewayHarness) -> None:
    gateway.clock.advance(1)
    response = gateway.client.post(
        "/api/models", data={"app_name": "default-game"}, headers={"x-api-key": gateway.tokens["msgpack_secret_key"]}
    )
    assert response.status_code in (400, 415)
    response = _model(gateway, gateway.tokens["msgpack_secret_key"], level_name="")
    assert response.status_code == 400
    assert [d["field"] for d in response.json()["details"]] == ["level_name"]


def test_model_upload_over_the_limit_is_413_and_leaves_nothing(make_gateway: Any) -> None:
    gw = make_gateway(max_model_bytes=1000)
    assert _model(gw, gw.tokens["msgpack_secret_key"], b"x" * 2000).status_code == 413
    blobs = gw.settings.data_dir / "blobs"
    assert [p for p in blobs.rglob("*") if p.is_file()] == []
