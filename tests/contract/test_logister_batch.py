"""POST /api/v1/ingest_events/batch and POST /api/v1/deployments: every status and body."""

from __future__ import annotations

import gzip
import hashlib
import uuid
from typing import Any

import orjson
import pytest

from tests.conftest import GatewayHarness

pytestmark = pytest.mark.contract

BATCH = "/api/v1/ingest_events/batch"


def _line(**event: Any) -> bytes:
    event.setdefault("uuid", str(uuid.uuid4()))
    event.setdefault("event_type", "log")
    event.setdefault("message", "hello")
    return orjson.dumps({"event": event})


def _post(gw: GatewayHarness, lines: list[bytes], *, gzipped: bool = True, **headers: str) -> Any:
    raw = b"\n".join(lines) + b"\n"
    body = gzip.compress(raw) if gzipped else raw
    sent = {"Content-Type": "application/x-ndjson", **gw.auth, **headers}
    if gzipped:
        sent["Content-Encoding"] = "gzip"
    return gw.client.post(BATCH, content=body, headers=sent)


def test_accepts_a_gzip_batch_with_per_line_results_in_order(gateway: GatewayHarness) -> None:
    ids = [str(uuid.uuid4()) for _ in range(3)]
    lines = [_line(uuid=i, message=f"m{n}") for n, i in enumerate(ids)]
    raw = b"\n".join(lines) + b"\n"
    response = _post(gateway, lines, **{"X-Logister-Batch-Id": hashlib.sha256(raw).hexdigest()})
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["schema_version"] == 1
    assert body["batch_id"] == hashlib.sha256(raw).hexdigest()
    assert (body["status"], body["accepted"], body["duplicates"]) == ("accepted", 3, 0)
    assert [r["id"] for r in body["results"]] == ids
    assert all(r["status"] == "accepted" and r["duplicate"] is False for r in body["results"])
    assert response.headers["X-RateLimit-Limit"] == "1200"
    assert response.headers["X-RateLimit-Remaining"] == "1197"
    assert int(response.headers["X-RateLimit-Reset"]) > 0
    (record,) = gateway.raw()  # one raw record per accepted batch, its items in line order
    assert (record["v"], [item["event_id"] for item in record["items"]]) == (2, ids)


def test_plain_ndjson_and_event_id_identity(gateway: GatewayHarness) -> None:
    event_id = str(uuid.uuid4())
    line = orjson.dumps({"EVENT": {"event_id": event_id, "event_type": "error", "message": "x"}})
    response = _post(gateway, [line], gzipped=False)
    assert response.status_code == 202, response.text
    assert response.json()["results"][0]["id"] == event_id


def test_replay_is_accepted_again_and_marked_duplicate(gateway: GatewayHarness) -> None:
    lines = [_line(), _line()]
    assert _post(gateway, lines).json()["duplicates"] == 0
    again = _post(gateway, lines)
    assert again.status_code == 202
    assert again.json()["duplicates"] == 2
    assert all(r["duplicate"] for r in again.json()["results"])


@pytest.mark.parametrize(
    ("line", "code"),
    [
        (orjson.dumps({"event": {"event_type": "log", "message": "no id"}}), "missing_identity"),
        (orjson.dumps({"event": {"uuid": "not-a-uuid", "event_type": "log", "message": "x"}}), "invalid_identity"),
        (orjson.dumps({"something": {"uuid": str(uuid.uuid4())}}), "invalid_envelope"),
        (orjson.dumps([1, 2, 3]), "invalid_envelope"),
        (b"{not json", "invalid_envelope"),
    ],
    ids=["no-identity", "bad-identity", "no-envelope", "array", "not-json"],
)
def test_malformed_lines_are_400_with_a_code_and_nothing_is_stored(
    gateway: GatewayHarness, line: bytes, code: str
) -> None:
    response = _post(gateway, [_line(), line])
    assert response.status_code == 400
    assert response.json()["code"] == code
    assert response.json()["line"] == 2
    assert gateway.raw() == []


def test_broken_gzip_is_invalid_gzip(gateway: GatewayHarness) -> None:
    headers = {"Content-Type": "application/x-ndjson", "Content-Encoding": "gzip", **gateway.auth}
    response = gateway.client.post(BATCH, content=b"\x1f\x8b\x08\x00garbage", headers=headers)
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_gzip"


@pytest.mark.parametrize("content_type", ["application/json", "text/plain", ""])
def test_non_ndjson_content_type_is_415(gateway: GatewayHarness, content_type: str) -> None:
    headers = {"Content-Type": content_type, **gateway.auth} if content_type else dict(gateway.auth)
    response = gateway.client.post(BATCH, content=_line(), headers=headers)
    assert response.status_code == 415
    assert response.json()["code"] == "unsupported_content_type"


def test_one_invalid_envelope_rolls_back_the_whole_batch_with_422(gateway: GatewayHarness) -> None:
    good, bad = _line(), _line(event_type="nonsense")
    response = _post(gateway, [good, bad, _line()])
    assert response.status_code == 422
    body = response.json()
    assert body["status"] == "rejected"
    assert [r["status"] for r in body["results"]] == ["rolled_back", "rejected", "rolled_back"]
    assert body["results"][1]["errors"] == ["Event type is not included in the list"]
    assert gateway.raw() == []


def test_too_many_lines_and_too_many_bytes_are_413(make_gateway: Any) -> None:
    gw = make_gateway(max_batch_lines=3, max_batch_body_bytes=4096, max_batch_inflated_bytes=64 * 1024)
    assert _post(gw, [_line() for _ in range(4)]).status_code == 413
    big = [_line(message="x" * 3000) for _ in range(2)]
    assert _post(gw, big, gzipped=False).status_code == 413
    assert gw.raw() == []


def test_gzip_bomb_is_413_not_a_500(make_gateway: Any) -> None:
    gw = make_gateway(max_batch_inflated_bytes=1024 * 1024)
    bomb = gzip.compress(b"\n" * (200 * 1024 * 1024), compresslevel=9)
    headers = {"Content-Type": "application/x-ndjson", "Content-Encoding": "gzip", **gw.auth}
    response = gw.client.post(BATCH, content=bomb, headers=headers)
    assert response.status_code == 413
    assert response.json()["code"] == "payload_too_large"


def test_every_envelope_counts_against_the_rate_limit(make_gateway: Any) -> None:
    gw = make_gateway(logister_rate_limit_requests=5)
    assert _post(gw, [_line() for _ in range(3)]).status_code == 202
    refused = _post(gw, [_line() for _ in range(3)])  # 3 + 3 > 5: refused whole
    assert refused.status_code == 429
    assert refused.json() == {
        "error": "Rate limit exceeded",
        "limit": 5,
        "window_seconds": 60,
        "retry_after": int(refused.headers["Retry-After"]),
    }
    assert [len(r["items"]) for r in gw.raw()] == [3]
    assert _post(gw, [_line(), _line()]).status_code == 202  # what is left still fits


def test_batch_needs_a_valid_token(gateway: GatewayHarness) -> None:
    response = gateway.client.post(
        BATCH, content=_line(), headers={"Content-Type": "application/x-ndjson", "Authorization": "Bearer nope"}
    )
    assert response.status_code == 401
    assert response.json() == {"error": "Unauthorized", "code": "malformed_token"}


def test_deployment_is_201_and_idempotent(gateway: GatewayHarness) -> None:
    body = {"deployment": {"release": "1.2.3", "environment": "production", "commit_sha": "abc1234", "branch": "main"}}
    first = gateway.client.post("/api/v1/deployments", json=body, headers=gateway.auth)
    second = gateway.client.post("/api/v1/deployments", json=body, headers=gateway.auth)
    assert first.status_code == second.status_code == 201
    assert first.json()["status"] == "accepted"
    assert first.json()["id"] == second.json()["id"]
    assert [r["route"] for r in gateway.raw()] == ["deployments", "deployments"]


@pytest.mark.parametrize(
    ("body", "status", "expected"),
    [
        ({"deployment": {"environment": "production"}}, 422, {"errors": ["Release can't be blank"]}),
        ({"release": "1.0"}, 400, {"error": "param is missing or the value is empty: deployment"}),
        (
            {"deployment": {"release": "1.0", "deployed_at": "yesterday"}},
            422,
            {"errors": ["Deployed at is not a valid ISO 8601 timestamp"]},
        ),
    ],
)
def test_deployment_refusals(gateway: GatewayHarness, body: dict[str, Any], status: int, expected: Any) -> None:
    response = gateway.client.post("/api/v1/deployments", json=body, headers=gateway.auth)
    assert response.status_code == status
    assert response.json() == expected
    assert gateway.raw() == []
