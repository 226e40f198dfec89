"""Hostile uploads: file names, content types and signed-URL tokens an attacker sends.

Each bad input is a 400 (or a 403 for a token) in the Forge Logger error format when the
upload is created or used, never a 201 followed by a 500, and leaves nothing stored or
recorded. The blob stores refuse unsafe keys themselves, so a grant signed before these
checks existed still gets a 400 on its PUT, not a 500.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
import pytest

from forgeline.blobstore.factory import create_blob_store
from forgeline.blobstore.grants import GrantSigner
from forgeline.blobstore.port import (
    BlobStore,
    InvalidContentType,
    InvalidKey,
    UploadGrant,
    check_content_type,
    check_key,
)
from tests.conftest import GatewayHarness

pytestmark = pytest.mark.contract

UPLOADS = "/v1/ingest/uploads"


def _auth(gw: GatewayHarness) -> dict[str, str]:
    return {"Authorization": f"Bearer {gw.tokens['forge_token']}"}


def _create(gw: GatewayHarness, **file: Any) -> httpx.Response:
    spec = {"filename": "shot.png", "contentType": "image/png", "size": 1000, "type": "screenshot", **file}
    return gw.client.post(UPLOADS, json=spec, headers=_auth(gw))


def _local(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


def _store(gw: GatewayHarness) -> BlobStore:
    s = gw.settings
    return create_blob_store(
        s.resolved_blob_store_url,
        s.blob_signing_key.reveal(),
        s.data_dir / "blob-signing.key",
        "http://unused",
        (s.s3_access_key.reveal(), s.s3_secret_key.reveal()),
    )


def _nothing_kept(gw: GatewayHarness) -> None:
    assert _store(gw).list_objects("") == []
    assert [r for r in gw.raw("raw.forge") if r["route"] == "upload"] == []


def _refused(response: httpx.Response, field: str) -> str:
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["code"] == "validation_error" and body["error"] == "Validation failed"
    [detail] = body["details"]
    assert detail["field"] == field
    return str(detail["message"])


@pytest.fixture
def gw(make_gateway: Callable[..., GatewayHarness], blob_backend: dict[str, Any]) -> GatewayHarness:
    return make_gateway(**blob_backend)


# --- file names ------------------------------------------------------------------------------

HOSTILE_NAMES = {
    ".hidden": "start with a dot",
    ".": "start with a dot",
    "..": "start with a dot",
    "..png": "start with a dot",
    "a\x00b.png": "control characters",
    "a\nb.png": "control characters",
    "a\r\nX-Injected: 1": "control characters",
    "tab\t.png": "control characters",
    "del\x7f.png": "control characters",
    "nel\x85.png": "control characters",
    "line\u2028sep.png": "control characters",
    "gnp\u202eexe.png": "bidirectional",
    "../../etc/passwd": "not a path",
    "dir/shot.png": "not a path",
    "c:\\shot.png": "not a path",
    "é" * 128: "at most 255 bytes",
    "x" * 256: "at most 255",
}


@pytest.mark.parametrize("name", list(HOSTILE_NAMES), ids=[repr(n)[:24] for n in HOSTILE_NAMES])
def test_hostile_file_names_are_400_at_creation(gateway: GatewayHarness, name: str) -> None:
    message = _refused(_create(gateway, filename=name), "filename")
    assert HOSTILE_NAMES[name] in message
    _nothing_kept(gateway)


def test_a_batch_names_every_bad_file(gateway: GatewayHarness) -> None:
    files = [
        {"filename": name, "contentType": "image/png", "size": 10, "type": "screenshot"}
        for name in ("ok.png", ".env", "a\x00b")
    ]
    response = gateway.client.post(UPLOADS, json={"files": files}, headers=_auth(gateway))
    assert response.status_code == 400
    assert [(d["index"], d["field"]) for d in response.json()["details"]] == [
        (1, "files.filename"),
        (2, "files.filename"),
    ]


@pytest.mark.parametrize(
    "name",
    [
        "shot.png",
        "a..b.png",
        "スクリーンショット 1.png",
        "x" * 255,
        "é" * 127 + "x",
        "name with spaces.tar.gz",
        "a?b#c%2F+&=;'~.png",
        "emoji 🎮.png",
    ],
    ids=["plain", "inner-dots", "japanese", "255-ascii", "255-bytes-utf8", "spaces", "url-characters", "emoji"],
)
def test_plain_names_up_to_255_bytes_are_stored(gw: GatewayHarness, name: str) -> None:
    created = _create(gw, filename=name, size=16)
    assert created.status_code == 201, created.text
    target = created.json()["uploads"][0]
    assert target["filename"] == name
    response = _upload(gw, target, b"0123456789abcdef")
    assert response.status_code == 201, response.text
    [completion] = [r for r in gw.raw("raw.forge") if r["route"] == "upload"]
    assert completion["body"]["filename"] == name
    assert _store(gw).get(completion["body"]["storage_key"]) == b"0123456789abcdef"


def _upload(gw: GatewayHarness, target: dict[str, Any], data: bytes) -> httpx.Response:
    """PUT with exactly the headers handed back, then (S3) POST the completion URL."""
    if "completeUrl" not in target:
        return gw.client.put(_local(target["url"]), content=data, headers=target["headers"])
    put = httpx.put(target["url"], content=data, headers=target["headers"], timeout=30)
    assert put.status_code == 200, put.text
    return gw.client.post(_local(target["completeUrl"]))


# --- content types ---------------------------------------------------------------------------

HOSTILE_TYPES = {
    "image/png\r\nX-Injected: 1": "control characters",
    "image/png\nX-Injected: 1": "control characters",
    "image/png\x00": "control characters",
    "image/png;\tcharset=x": "control characters",
    "image/png\x7f": "control characters",
    "image/pngé": "media type",
    "image": "media type",
    "/png": "media type",
    "image/": "media type",
    "image/png ": "media type",
    " image/png": "media type",
    "image png": "media type",
    "image/png; charset": "media type",
    "image/png; =x": "media type",
    'text/plain; charset="unterminated': "media type",
    "image/png, text/html": "media type",
    "x" * 129: "at most 128",
}


@pytest.mark.parametrize("content_type", list(HOSTILE_TYPES), ids=[repr(t)[:24] for t in HOSTILE_TYPES])
def test_hostile_content_types_are_400_at_creation(gateway: GatewayHarness, content_type: str) -> None:
    message = _refused(_create(gateway, contentType=content_type), "contentType")
    assert HOSTILE_TYPES[content_type] in message
    _nothing_kept(gateway)


@pytest.mark.parametrize(
    "content_type",
    [
        "image/png",
        "application/vnd.forge+json",
        "text/plain; charset=utf-8",
        'text/plain;format="a b\\"c"',
        "video/mp4;",
    ],
)
def test_media_types_with_parameters_round_trip(gw: GatewayHarness, content_type: str) -> None:
    """The header handed back is the one signed, and a PUT that sends it is accepted."""
    created = _create(gw, contentType=content_type, size=4)
    assert created.status_code == 201, created.text
    target = created.json()["uploads"][0]
    assert target["headers"] == {"Content-Type": content_type}
    response = _upload(gw, target, b"data")
    assert response.status_code == 201, response.text


# --- signed-URL tokens -----------------------------------------------------------------------

MALFORMED_TOKENS = [
    "a.%C3%A9",
    "%FF.%FF",
    "%C3%A9.%C3%A9",
    "%00.%00",
    "",
    ".",
    "a.",
    ".b",
    "a.b.c",
    "a%0D%0Ab.c",
    "eyJ9." + "A" * 43,  # the right shape, a wrong signature
    "A" * 20000 + "." + "A" * 43,
]


@pytest.mark.parametrize("token", MALFORMED_TOKENS, ids=[t[:16] for t in MALFORMED_TOKENS])
def test_malformed_tokens_are_403_on_put_and_complete(gateway: GatewayHarness, token: str) -> None:
    target = _create(gateway).json()["uploads"][0]
    path = f"/v1/blobs/{target['uploadId']}"
    put = gateway.client.put(f"{path}?token={token}", content=b"x", headers={"Content-Type": "image/png"})
    complete = gateway.client.post(f"{path}/complete?token={token}")
    for response in (put, complete):
        assert response.status_code == 403, response.text
        assert response.json() == {"error": "Upload URL is invalid or expired", "code": "forbidden"}
    _nothing_kept(gateway)


def test_malformed_token_is_403_on_the_s3_completion_url(
    make_gateway: Callable[..., GatewayHarness], request: pytest.FixtureRequest
) -> None:
    server = request.getfixturevalue("s3_server")
    gw = make_gateway(**server.settings(request.getfixturevalue("s3_bucket")))
    target = _create(gw).json()["uploads"][0]
    url = urlsplit(target["completeUrl"])
    for token in ("a.%C3%A9", "%FF.%FF"):
        assert gw.client.post(f"{url.path}?token={token}").status_code == 403


def test_a_token_for_another_upload_is_403(gateway: GatewayHarness) -> None:
    first, second = (_create(gateway).json()["uploads"][0] for _ in range(2))
    token = urlsplit(first["url"]).query
    response = gateway.client.put(f"/v1/blobs/{second['uploadId']}?{token}", content=b"x", headers=first["headers"])
    assert response.status_code == 403


# --- the stores refuse unsafe keys themselves ---------------------------------------------------


UPLOAD_ID = "6f1b7c52-2f6e-4c1a-9a55-0d4c1f0e2b11"


def _signed(gw: GatewayHarness, filename: str) -> str:
    """The token of a grant as a gateway that did not check file names would have signed it."""
    assert _create(gw).status_code == 201  # the app has created its signing key by now
    secret = gw.settings.blob_signing_key.reveal().encode() or (gw.settings.data_dir / "blob-signing.key").read_bytes()
    meta = {
        "organisation_id": gw.tokens["organisation_id"],
        "project_id": gw.tokens["project_id"],
        "environment": gw.tokens["environment"],
        "attachment_type": "screenshot",
        "filename": filename,
    }
    key = f"{gw.tokens['project_id']}/{UPLOAD_ID}/{filename}"
    grant = UploadGrant(UPLOAD_ID, key, "image/png", 100, int(gw.clock.time()) + 600, meta=meta)
    return quote(GrantSigner(secret).token(grant))


@pytest.mark.parametrize("filename", [".hidden", "a\x00b", "..", "x" * 300, "a\nb"], ids=repr)
def test_a_grant_signed_for_an_unsafe_key_is_400_on_put_and_complete(gateway: GatewayHarness, filename: str) -> None:
    token = _signed(gateway, filename)
    path = f"/v1/blobs/{UPLOAD_ID}"
    put = gateway.client.put(f"{path}?token={token}", content=b"x", headers={"Content-Type": "image/png"})
    complete = gateway.client.post(f"{path}/complete?token={token}")
    for response in (put, complete):
        assert response.status_code == 400, response.text
        assert response.json()["code"] == "invalid_filename"
    assert [r for r in gateway.raw("raw.forge") if r["route"] == "upload"] == []


UNSAFE_KEYS = [
    "p/u/.hidden",
    "p/u/..",
    "p/../u",
    "p/u/a\x00b",
    "p/u/a\nb",
    "p/u/a\x85b",
    "p/u/" + "x" * 256,
    "p/" + "a/" * 600 + "b",
    "p/u/\ud800",
]


@pytest.mark.parametrize("key", UNSAFE_KEYS, ids=[repr(k)[:20] for k in UNSAFE_KEYS])
def test_stores_refuse_unsafe_keys(blob_store: BlobStore, key: str) -> None:
    with pytest.raises(InvalidKey):
        check_key(key)
    with pytest.raises(InvalidKey):
        blob_store.put(key, b"x")
    grant = UploadGrant("u", key, "image/png", 10, 2**31)
    with pytest.raises(InvalidKey):
        blob_store.upload_target(grant)
    assert blob_store.list_objects("") == []


@pytest.mark.parametrize("content_type", ["image/png\r\nX-Injected: 1", "image/pngé", "", "image"])
def test_stores_hand_out_no_unsafe_content_type(blob_store: BlobStore, content_type: str) -> None:
    with pytest.raises(InvalidContentType):
        check_content_type(content_type)
    with pytest.raises(InvalidContentType):
        blob_store.upload_target(UploadGrant("u", "p/u/a.png", content_type, 10, 2**31))


# --- headers an HTTP client library would not send ----------------------------------------------


def _asgi(gw: GatewayHarness, method: str, url: str, headers: list[tuple[bytes, bytes]]) -> int:
    """One request straight into the app with raw header bytes; the status it answers."""
    parts = urlsplit(url)
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"x", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": parts.path,
        "raw_path": parts.path.encode(),
        "root_path": "",
        "query_string": parts.query.encode(),
        "headers": headers,
        "client": ("203.0.113.9", 5000),
        "server": ("testserver", 80),
    }
    with contextlib.suppress(Exception):  # a 500 re-raises after it was sent
        gw.client.portal.call(gw.client.app, scope, receive, send)
    return int(sent[0]["status"])


def test_a_content_length_of_non_ascii_digits_is_never_a_500(gateway: GatewayHarness) -> None:
    """'²'.isdigit() is True and int('²') raises: the PUT, every JSON route and /api/models said 500."""
    length = (b"content-length", "²".encode("latin-1"))
    target = _create(gateway).json()["uploads"][0]
    assert _asgi(gateway, "PUT", _local(target["url"]), [length, (b"content-type", b"image/png")]) < 500
    forge = (b"authorization", f"Bearer {gateway.tokens['forge_token']}".encode())
    assert _asgi(gateway, "POST", "/v1/ingest/sessions", [forge, length, (b"content-type", b"application/json")]) == 400
    secret = (b"x-api-key", gateway.tokens["msgpack_secret_key"].encode())
    multipart = (b"content-type", b"multipart/form-data; boundary=x")
    assert _asgi(gateway, "POST", "/api/models", [secret, length, multipart]) < 500
