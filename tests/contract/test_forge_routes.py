"""Forge Logger ingest routes (SPEC 4.1): every route, every status of the seed's table."""

from __future__ import annotations

import hashlib
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from forgeline.blobstore.local import LocalBlobStore
from tests.conftest import GatewayHarness

pytestmark = pytest.mark.contract

SESSION = {
    "build": {"version": "1.14.2", "platform": "windows", "gitCommit": "a1b2c3d4", "channel": "dev"},
    "player": {"externalId": "steam_76561198000000000"},
    "metadata": {"difficulty": "hard", "region": "eu-west"},
}


def _auth(gw: GatewayHarness) -> dict[str, str]:
    return {"Authorization": f"Bearer {gw.tokens['forge_token']}"}


def _post(gw: GatewayHarness, path: str, body: Any, **headers: str) -> Any:
    return gw.client.post(path, json=body, headers={**_auth(gw), **headers})


def _session(gw: GatewayHarness) -> str:
    response = _post(gw, "/v1/ingest/sessions", SESSION)
    assert response.status_code == 201, response.text
    return str(response.json()["sessionId"])


def _raw(gw: GatewayHarness) -> list[dict[str, Any]]:
    return gw.raw("raw.forge")


# --- sessions ---------------------------------------------------------------------------------


def test_the_seed_curl_example_starts_a_session(gateway: GatewayHarness) -> None:
    response = _post(gateway, "/v1/ingest/sessions", SESSION, **{"Content-Type": "application/json"})
    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"sessionId", "buildId", "startedAt"}
    uuid.UUID(body["sessionId"])
    assert body["startedAt"].endswith("Z")
    routes = sorted(r["route"] for r in _raw(gateway))
    assert routes == ["build", "session"]


def test_the_seed_node_example_minimal_session(gateway: GatewayHarness) -> None:
    body = {"build": {"version": "1.14.2", "platform": "windows"}, "player": {"externalId": "player-42"}}
    assert _post(gateway, "/v1/ingest/sessions", body).status_code == 201


def test_build_id_is_the_same_for_the_same_build_and_sessions_differ(gateway: GatewayHarness) -> None:
    first = _post(gateway, "/v1/ingest/sessions", SESSION).json()
    second = _post(gateway, "/v1/ingest/sessions", SESSION).json()
    other = _post(gateway, "/v1/ingest/sessions", {"build": {"version": "1.14.3", "platform": "windows"}}).json()
    assert first["buildId"] == second["buildId"] != other["buildId"]
    assert first["sessionId"] != second["sessionId"]


def test_session_validation_names_every_field(gateway: GatewayHarness) -> None:
    response = _post(gateway, "/v1/ingest/sessions", {"build": {"channel": "nightly"}, "player": "x"})
    assert response.status_code == 400
    fields = {d["field"] for d in response.json()["details"]}
    assert fields == {"build.version", "build.platform", "build.channel", "player"}
    assert _raw(gateway) == []


def test_session_without_build_is_400(gateway: GatewayHarness) -> None:
    response = _post(gateway, "/v1/ingest/sessions", {})
    assert response.status_code == 400
    assert response.json()["details"][0]["field"] == "build"


@pytest.mark.parametrize(
    ("authorization", "code"),
    [
        (None, "missing_token"),
        ("Bearer nope", "malformed_token"),
        ("Bearer flg_unknown", "invalid_token"),
        ("Bearer eyJhbGciOiJIUzI1NiJ9.e30.sig", "malformed_token"),
        ("Basic Zm9vOmJhcg==", "missing_token"),
    ],
)
def test_missing_or_invalid_token_is_401(gateway: GatewayHarness, authorization: str | None, code: str) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    response = gateway.client.post("/v1/ingest/sessions", json=SESSION, headers=headers)
    assert response.status_code == 401
    assert response.json() == {"error": "Missing or invalid token", "code": code}


def test_tokens_of_other_families_are_401(gateway: GatewayHarness) -> None:
    for name in ("logister_token", "msgpack_public_token", "msgpack_secret_key"):
        headers = {"Authorization": f"Bearer {gateway.tokens[name]}"}
        response = gateway.client.post("/v1/ingest/sessions", json=SESSION, headers=headers)
        assert response.status_code == 401
        assert response.json()["code"] == "wrong_token_kind"


def test_another_project_or_environment_is_403(gateway: GatewayHarness) -> None:
    assert _post(gateway, "/v1/ingest/sessions", {**SESSION, "environment": "staging"}).status_code == 403
    assert _post(gateway, "/v1/ingest/sessions", {**SESSION, "projectId": "someone-else"}).status_code == 403
    ok = {**SESSION, "environment": "production", "projectId": gateway.tokens["project_id"]}
    assert _post(gateway, "/v1/ingest/sessions", ok).status_code == 201


def test_rate_limit_is_429_with_retry_after(make_gateway: Any) -> None:
    gw = make_gateway(forge_rate_limit_requests=2)
    assert _post(gw, "/v1/ingest/sessions", SESSION).status_code == 201
    assert _post(gw, "/v1/ingest/sessions", SESSION).status_code == 201
    response = _post(gw, "/v1/ingest/sessions", SESSION)
    assert response.status_code == 429
    assert int(response.headers["Retry-After"]) >= 1
    gw.clock.advance(61)
    assert _post(gw, "/v1/ingest/sessions", SESSION).status_code == 201


def test_malformed_json_and_wrong_content_type_are_400(gateway: GatewayHarness) -> None:
    headers = {**_auth(gateway), "Content-Type": "application/json"}
    assert gateway.client.post("/v1/ingest/sessions", content=b"{", headers=headers).status_code == 400
    headers["Content-Type"] = "application/xml"
    assert gateway.client.post("/v1/ingest/sessions", content=b"<a/>", headers=headers).status_code == 400


def test_oversize_body_is_413(make_gateway: Any) -> None:
    gw = make_gateway(max_body_bytes=1024)
    response = _post(gw, "/v1/ingest/sessions", {**SESSION, "metadata": {"x": "y" * 2000}})
    assert response.status_code == 413


def test_health(gateway: GatewayHarness) -> None:
    assert gateway.client.get("/health").status_code == 200


# --- events -----------------------------------------------------------------------------------


def test_single_event_is_accepted(gateway: GatewayHarness) -> None:
    session_id = _session(gateway)
    response = _post(gateway, "/v1/ingest/events", {"sessionId": session_id, "type": "level_start"})
    assert response.status_code == 201
    body = response.json()
    assert body["accepted"] == 1 and len(body["eventIds"]) == 1


def test_batch_of_200_is_accepted_and_ids_are_stable_on_retry(gateway: GatewayHarness) -> None:
    session_id = _session(gateway)
    batch = [
        {"sessionId": session_id, "type": "tick", "timestamp": "2026-04-08T14:30:00Z", "properties": {"n": n}}
        for n in range(200)
    ]
    first = _post(gateway, "/v1/ingest/events", batch)
    assert first.status_code == 201 and first.json()["accepted"] == 200
    again = _post(gateway, "/v1/ingest/events", batch)
    assert again.json()["eventIds"] == first.json()["eventIds"]
    assert len(set(first.json()["eventIds"])) == 200


def test_batch_of_201_is_400(gateway: GatewayHarness) -> None:
    session_id = _session(gateway)
    response = _post(gateway, "/v1/ingest/events", [{"sessionId": session_id, "type": "t"}] * 201)
    assert response.status_code == 400
    assert sorted(r["route"] for r in _raw(gateway)) == ["build", "session"]


def test_empty_batch_is_400(gateway: GatewayHarness) -> None:
    assert _post(gateway, "/v1/ingest/events", []).status_code == 400


def test_bad_items_are_all_named_and_nothing_is_enqueued(gateway: GatewayHarness) -> None:
    session_id = _session(gateway)
    batch = [
        {"sessionId": session_id, "type": "ok"},
        {"sessionId": "not-a-uuid", "type": "x"},
        {"sessionId": session_id},
        {"sessionId": session_id, "type": "x", "severity": "meh", "timestamp": "yesterday", "properties": []},
        "nope",
    ]
    response = _post(gateway, "/v1/ingest/events", batch)
    assert response.status_code == 400
    got = {(d["index"], d["field"]) for d in response.json()["details"]}
    assert got == {
        (1, "sessionId"),
        (2, "type"),
        (3, "severity"),
        (3, "timestamp"),
        (3, "properties"),
        (4, "body"),
    }
    assert sorted(r["route"] for r in _raw(gateway)) == ["build", "session"]


# --- reports ----------------------------------------------------------------------------------


def _report(session_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "sessionId": session_id,
        "title": "Fell through the floor",
        "description": "Near the bridge on level 3",
        "severity": "high",
        "reporterType": "tester",
        **extra,
    }


def test_report_is_accepted_with_export_providers(gateway: GatewayHarness) -> None:
    session_id = _session(gateway)
    response = _post(gateway, "/v1/ingest/reports", _report(session_id, export=["github", "jira"]))
    assert response.status_code == 201
    body = response.json()
    uuid.UUID(body["reportId"])
    assert [e["provider"] for e in body["export"]] == ["github", "jira"]


def test_same_client_request_id_gives_the_same_body(gateway: GatewayHarness) -> None:
    session_id = _session(gateway)
    report = _report(session_id, clientRequestId=str(uuid.uuid4()))
    first = _post(gateway, "/v1/ingest/reports", report)
    second = _post(gateway, "/v1/ingest/reports", report)
    assert first.status_code == second.status_code == 201
    assert first.content == second.content
    other = _post(gateway, "/v1/ingest/reports", _report(session_id, clientRequestId=str(uuid.uuid4())))
    assert other.json()["reportId"] != first.json()["reportId"]


def test_fifty_concurrent_identical_reports_get_identical_bodies(gateway: GatewayHarness) -> None:
    session_id = _session(gateway)
    report = _report(session_id, clientRequestId=str(uuid.uuid4()))
    with ThreadPoolExecutor(10) as pool:
        bodies = list(pool.map(lambda _: _post(gateway, "/v1/ingest/reports", report).content, range(50)))
    assert len(set(bodies)) == 1
    ids = {r["id"] for r in _raw(gateway) if r["route"] == "report"}
    assert len(ids) == 1


def test_report_validation(gateway: GatewayHarness) -> None:
    response = _post(
        gateway,
        "/v1/ingest/reports",
        {"sessionId": "x", "severity": "urgent", "reporterType": "boss", "export": ["slack"], "uploadIds": ["u"]},
    )
    assert response.status_code == 400
    fields = {d["field"] for d in response.json()["details"]}
    assert fields == {"sessionId", "title", "description", "severity", "reporterType", "export[0]", "uploadIds[0]"}


# --- uploads ----------------------------------------------------------------------------------


def _create_upload(gw: GatewayHarness, **file: Any) -> dict[str, Any]:
    spec = {"filename": "shot.png", "contentType": "image/png", "size": 1000, "type": "screenshot", **file}
    response = _post(gw, "/v1/ingest/uploads", {"sessionId": _session(gw), "files": [spec]})
    assert response.status_code == 201, response.text
    target: dict[str, Any] = response.json()["uploads"][0]
    return target


def _put(gw: GatewayHarness, target: dict[str, Any], data: bytes, **headers: str) -> Any:
    url = urlsplit(target["url"])
    return gw.client.put(f"{url.path}?{url.query}", content=data, headers={**target["headers"], **headers})


def test_upload_round_trip_then_report_references_it(gateway: GatewayHarness) -> None:
    target = _create_upload(gateway)
    assert target["method"] == "PUT" and target["headers"] == {"Content-Type": "image/png"}
    data = bytes(range(256)) * 3
    response = _put(gateway, target, data)
    assert response.status_code == 201, response.text
    assert response.json()["sha256"] == hashlib.sha256(data).hexdigest()
    completion = [r for r in _raw(gateway) if r["route"] == "upload"]
    assert completion[0]["body"]["size_bytes"] == len(data)
    store = LocalBlobStore(gateway.settings.data_dir / "blobs", b"unused", "")
    assert hashlib.sha256(store.read(completion[0]["body"]["storage_key"])).hexdigest() == response.json()["sha256"]
    report = _report(_session(gateway), uploadIds=[target["uploadId"]])
    assert _post(gateway, "/v1/ingest/reports", report).status_code == 201


def test_tampered_or_expired_upload_url_is_403(gateway: GatewayHarness) -> None:
    target = _create_upload(gateway)
    tampered = dict(target, url=target["url"][:-3] + ("AAA" if not target["url"].endswith("AAA") else "BBB"))
    assert _put(gateway, tampered, b"x").status_code == 403
    gateway.clock.advance(gateway.settings.upload_url_ttl_seconds + 1)
    assert _put(gateway, target, b"x").status_code == 403


def test_upload_oversize_is_413_and_leaves_nothing(gateway: GatewayHarness) -> None:
    target = _create_upload(gateway, size=10)
    assert _put(gateway, target, b"x" * 11).status_code == 413
    blobs = Path(gateway.settings.data_dir / "blobs")
    assert [p for p in blobs.rglob("*") if p.is_file()] == []


def test_upload_wrong_content_type_is_400(gateway: GatewayHarness) -> None:
    target = _create_upload(gateway)
    assert _put(gateway, target, b"x", **{"Content-Type": "image/jpeg"}).status_code == 400


def test_upload_over_the_type_limit_is_refused_at_creation(make_gateway: Any) -> None:
    gw = make_gateway(max_upload_bytes=(("screenshot", 100),))
    response = _post(
        gw, "/v1/ingest/uploads", {"filename": "a.png", "contentType": "image/png", "size": 101, "type": "screenshot"}
    )
    assert response.status_code == 400
    assert response.json()["details"][0]["field"] == "size"
