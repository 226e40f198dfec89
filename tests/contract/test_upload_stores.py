"""Uploads through the gateway on both blob stores (SPEC 4.1 uploads, issue 4 "what must be shown").

Local directory: the client PUTs to the gateway, which enforces size and type while receiving.
S3 (a real MinIO built from source, or moto's server): the client PUTs straight to the bucket
with the pre-signed URL, then POSTs ``completeUrl``; S3 itself refuses a tampered or expired
URL (403), and the gateway's completion check refuses an oversize object (413) or another
content type (400) and deletes it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx
import pytest

from forgeline.blobstore.factory import create_blob_store
from forgeline.blobstore.port import BlobStore
from tests.conftest import GatewayHarness
from tests.contract.forge_support import new_session
from tests.fixtures.s3 import S3Server

pytestmark = pytest.mark.contract


def _store(gw: GatewayHarness) -> BlobStore:
    s = gw.settings
    return create_blob_store(
        s.resolved_blob_store_url,
        s.blob_signing_key.reveal(),
        s.data_dir / "blob-signing.key",
        "http://unused",
        (s.s3_access_key.reveal(), s.s3_secret_key.reveal()),
    )


def _auth(gw: GatewayHarness) -> dict[str, str]:
    return {"Authorization": f"Bearer {gw.tokens['forge_token']}"}


def _create(gw: GatewayHarness, **file: Any) -> dict[str, Any]:
    spec = {"filename": "shot.png", "contentType": "image/png", "size": 1000, "type": "screenshot", **file}
    body = {"sessionId": new_session(gw), "files": [spec]}
    response = gw.client.post("/v1/ingest/uploads", json=body, headers=_auth(gw))
    assert response.status_code == 201, response.text
    target: dict[str, Any] = response.json()["uploads"][0]
    return target


def _local(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


def _upload(gw: GatewayHarness, target: dict[str, Any], data: bytes, **headers: str) -> httpx.Response:
    """What a client does with a target: PUT the bytes, then (S3) POST the completion URL.

    Returns the response that decides: the S3 PUT when S3 refused it, else the gateway's."""
    headers = {**target["headers"], **headers}
    if "completeUrl" not in target:
        return gw.client.put(_local(target["url"]), content=data, headers=headers)
    put = httpx.put(target["url"], content=data, headers=headers, timeout=30)
    if put.status_code != 200:
        return put
    return gw.client.post(_local(target["completeUrl"]))


def _uploads(gw: GatewayHarness) -> list[dict[str, Any]]:
    return [r for r in gw.raw("raw.forge") if r["route"] == "upload"]


@pytest.fixture
def gw(make_gateway: Callable[..., GatewayHarness], blob_backend: dict[str, Any]) -> GatewayHarness:
    return make_gateway(**blob_backend)


def test_round_trip_create_put_report_then_bytes_match(gw: GatewayHarness) -> None:
    target = _create(gw)
    assert target["method"] == "PUT" and target["headers"] == {"Content-Type": "image/png"}
    data = bytes(range(256)) * 3 + b"tail"
    response = _upload(gw, target, data)
    assert response.status_code == 201, response.text
    assert response.json() == {
        "uploadId": target["uploadId"],
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }
    [completion] = _uploads(gw)
    assert completion["id"] == target["uploadId"]
    assert completion["body"]["size_bytes"] == len(data) and completion["body"]["content_type"] == "image/png"
    session_id = completion["body"]["session_id"]
    report = {
        "sessionId": session_id,
        "title": "Crash on load",
        "description": "see screenshot",
        "severity": "high",
        "reporterType": "qa",
        "uploadIds": [target["uploadId"]],
    }
    assert gw.client.post("/v1/ingest/reports", json=report, headers=_auth(gw)).status_code == 201
    stored = _store(gw).get(completion["body"]["storage_key"])
    assert hashlib.sha256(stored).hexdigest() == hashlib.sha256(data).hexdigest() == completion["body"]["sha256"]


def test_oversize_is_413_and_nothing_is_kept_or_recorded(gw: GatewayHarness) -> None:
    target = _create(gw, size=10)
    response = _upload(gw, target, b"x" * 11)
    assert response.status_code == 413, response.text
    assert response.json()["code"] == "payload_too_large"
    assert _store(gw).list_objects("") == [] and _uploads(gw) == []


def test_wrong_content_type_is_400_and_nothing_is_kept(gw: GatewayHarness) -> None:
    target = _create(gw)
    response = _upload(gw, target, b"not a png", **{"Content-Type": "image/jpeg"})
    assert response.status_code == 400, response.text
    assert response.json()["code"] == "wrong_content_type"
    assert _store(gw).list_objects("") == [] and _uploads(gw) == []


def test_expired_url_is_403(gw: GatewayHarness, request: pytest.FixtureRequest) -> None:
    ttl = gw.settings.upload_url_ttl_seconds
    if "completeUrl" in _create(gw):
        server: S3Server = request.getfixturevalue("s3_server")
        if not server.checks_signatures:
            pytest.skip("moto's S3 server does not check pre-signed URL expiry")
        # Sign as of more than one TTL ago: S3 itself (real time) sees an expired URL.
        gw.clock.advance(-(ttl + 60))
        target = _create(gw)
        gw.clock.advance(ttl + 60)
    else:
        target = _create(gw)
        gw.clock.advance(ttl + 1)
    response = _upload(gw, target, b"x")
    assert response.status_code == 403, response.text
    assert _uploads(gw) == []


def _tamper(url: str, param: str) -> str:
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    value = query[param]
    query[param] = value[:-4] + ("AAAA" if not value.endswith("AAAA") else "BBBB")
    return urlunsplit(parts._replace(query=urlencode(query)))


def test_tampered_url_is_403(gw: GatewayHarness, request: pytest.FixtureRequest) -> None:
    target = _create(gw)
    if "completeUrl" in target:
        server: S3Server = request.getfixturevalue("s3_server")
        if server.checks_signatures:
            bad = dict(target, url=_tamper(target["url"], "X-Amz-Signature"))
            assert _upload(gw, bad, b"x").status_code == 403
        # The completion URL is the gateway's own HMAC grant: checked whatever the server.
        assert _upload(gw, target, b"x").status_code == 201
        forged = gw.client.post(_local(_tamper(target["completeUrl"], "token")))
        assert forged.status_code == 403 and forged.json()["code"] == "forbidden"
        other = _create(gw)
        swapped = target["completeUrl"].replace(target["uploadId"], other["uploadId"])
        assert gw.client.post(_local(swapped)).status_code == 403
    else:
        bad = dict(target, url=_tamper(target["url"], "token"))
        assert _upload(gw, bad, b"x").status_code == 403
        assert _uploads(gw) == []


def test_s3_completion_before_the_put_is_400_then_works(make_gateway: Any, s3_server: S3Server, s3_bucket: str) -> None:
    gw = make_gateway(**s3_server.settings(s3_bucket))
    target = _create(gw)
    early = gw.client.post(_local(target["completeUrl"]))
    assert early.status_code == 400 and early.json()["code"] == "upload_missing"
    assert _upload(gw, target, b"png").status_code == 201
    # The completion URL outlives the PUT URL by one TTL, then it is refused too.
    gw.clock.advance(2 * gw.settings.upload_url_ttl_seconds + 1)
    assert gw.client.post(_local(target["completeUrl"])).status_code == 403


def test_s3_gateway_does_not_take_uploads_itself(make_gateway: Any, s3_server: S3Server, s3_bucket: str) -> None:
    gw = make_gateway(**s3_server.settings(s3_bucket))
    target = _create(gw)
    assert urlsplit(target["url"]).netloc == urlsplit(s3_server.endpoint).netloc
    token = dict(parse_qsl(urlsplit(target["completeUrl"]).query))["token"]
    response = gw.client.put(f"/v1/blobs/{target['uploadId']}?token={token}", content=b"x", headers=target["headers"])
    assert response.status_code == 404


def test_model_upload_is_stored_in_the_blob_store(gw: GatewayHarness) -> None:
    data = bytes(range(256)) * 200
    gw.clock.advance(1)
    response = gw.client.post(
        "/api/models",
        data={"app_name": "default-game", "level_name": "Level_1"},
        files={"model_file": ("level1.glb", data, "model/gltf-binary")},
        headers={"x-api-key": gw.tokens["msgpack_secret_key"]},
    )
    assert response.status_code == 200, response.text
    [record] = [r for r in gw.raw("raw.msgpack") if r.get("route") == "model"]
    key = record["body"]["storage_key"]
    store = _store(gw)
    assert store.get(key) == data and response.json()["sha256"] == hashlib.sha256(data).hexdigest()
    assert [o.key for o in store.list_objects(key.rsplit("/", 1)[0] + "/")] == [key]


def test_model_upload_over_the_limit_leaves_nothing(make_gateway: Any, blob_backend: dict[str, Any]) -> None:
    gw = make_gateway(max_model_bytes=1000, **blob_backend)
    gw.clock.advance(1)
    response = gw.client.post(
        "/api/models",
        data={"app_name": "default-game", "level_name": "L"},
        files={"model_file": ("m.glb", b"x" * 2000, "model/gltf-binary")},
        headers={"x-api-key": gw.tokens["msgpack_secret_key"]},
    )
    assert response.status_code == 413
    assert _store(gw).list_objects("") == []
