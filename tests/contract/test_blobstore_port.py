"""The blob-store port on both adapters: a local directory and a bucket on a real S3 server."""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from forgeline.blobstore.factory import BlobStoreConfigError, create_blob_store
from forgeline.blobstore.port import BlobStore, InvalidKey, TooLarge, UploadGrant, WrongContentType
from tests.fixtures.s3 import S3Server

pytestmark = pytest.mark.contract


def test_put_get_stat_replace_delete(blob_store: BlobStore) -> None:
    data = bytes(range(256)) * 40
    stored = blob_store.put("exports/kind=event/part-0001.ndjson", data, "application/x-ndjson")
    assert (stored.size, stored.sha256) == (len(data), hashlib.sha256(data).hexdigest())
    assert blob_store.get("exports/kind=event/part-0001.ndjson") == data
    assert blob_store.stat("exports/kind=event/part-0001.ndjson").size == len(data)
    blob_store.put("exports/kind=event/part-0001.ndjson", b"second", "application/x-ndjson")
    assert blob_store.get("exports/kind=event/part-0001.ndjson") == b"second"
    blob_store.delete("exports/kind=event/part-0001.ndjson")
    blob_store.delete("exports/kind=event/part-0001.ndjson")  # absent: no error
    with pytest.raises(FileNotFoundError):
        blob_store.get("exports/kind=event/part-0001.ndjson")
    with pytest.raises(FileNotFoundError):
        blob_store.stat("exports/kind=event/part-0001.ndjson")


def test_list_by_prefix_is_sorted_and_exact(blob_store: BlobStore) -> None:
    keys = ["a/2026/02/x.ndjson", "a/2026/01/y.ndjson", "a/2026/01/x.ndjson", "ab/z.ndjson", "b/w.ndjson"]
    for n, key in enumerate(keys):
        blob_store.put(key, b"x" * n)
    assert [o.key for o in blob_store.list_objects("a/")] == sorted(keys[:3])
    assert [o.key for o in blob_store.list_objects("a/2026/01/")] == ["a/2026/01/x.ndjson", "a/2026/01/y.ndjson"]
    assert [o.key for o in blob_store.list_objects("a")] == sorted(keys[:4])
    assert [o.key for o in blob_store.list_objects("a/2026/01/x")] == ["a/2026/01/x.ndjson"]
    assert [o.key for o in blob_store.list_objects()] == sorted(keys)
    assert {o.key: o.size for o in blob_store.list_objects("b/")} == {"b/w.ndjson": 4}
    assert blob_store.list_objects("nothing/") == []


@pytest.mark.parametrize("key", ["", "/abs", "a//b", "../up", "a/../b", "a/.hidden", "a/"])
def test_bad_keys_are_refused(blob_store: BlobStore, key: str) -> None:
    with pytest.raises(InvalidKey):
        blob_store.put(key, b"x")


def _grant(key: str, max_bytes: int, content_type: str = "image/png") -> UploadGrant:
    return UploadGrant(upload_id="u1", key=key, content_type=content_type, max_bytes=max_bytes, expires_at=2**31)


async def _chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


def test_receive_stores_all_or_nothing(blob_store: BlobStore) -> None:
    stored = asyncio.run(blob_store.receive(_grant("m/one", 10), _chunks(b"12345", b"67890")))
    assert blob_store.get("m/one") == b"1234567890" and stored.sha256 == hashlib.sha256(b"1234567890").hexdigest()
    with pytest.raises(TooLarge):
        asyncio.run(blob_store.receive(_grant("m/two", 10), _chunks(b"12345", b"678901")))
    assert [o.key for o in blob_store.list_objects("m/")] == ["m/one"]


def test_complete_checks_an_uploaded_object_against_its_grant(blob_store: BlobStore) -> None:
    blob_store.put("u/ok.png", b"png-bytes", "image/png")
    done = blob_store.complete(_grant("u/ok.png", 100))
    assert (done.size, done.sha256) == (9, hashlib.sha256(b"png-bytes").hexdigest())
    blob_store.put("u/big.png", b"x" * 101, "image/png")
    with pytest.raises(TooLarge):
        blob_store.complete(_grant("u/big.png", 100))
    with pytest.raises(FileNotFoundError):
        blob_store.get("u/big.png")  # deleted: it broke its grant
    with pytest.raises(FileNotFoundError):
        blob_store.complete(_grant("u/never.png", 100))


def test_s3_complete_refuses_another_content_type(s3_store: BlobStore) -> None:
    s3_store.put("u/shot.png", b"jpeg really", "image/jpeg")
    assert s3_store.stat("u/shot.png").content_type == "image/jpeg"
    with pytest.raises(WrongContentType):
        s3_store.complete(_grant("u/shot.png", 100, "image/png"))
    assert s3_store.list_objects("u/") == []


def test_s3_upload_target_is_a_presigned_put_with_a_completion_url(s3_server: S3Server, s3_store: BlobStore) -> None:
    target = s3_store.upload_target(_grant("p/u1/shot.png", 10))
    assert target.method == "PUT" and target.url.startswith(f"{s3_server.endpoint}/")
    assert "X-Amz-Signature=" in target.url and "/p/u1/shot.png?" in target.url
    assert target.complete_url is not None and target.complete_url.startswith(
        "http://gateway.test/v1/blobs/u1/complete?"
    )
    assert not s3_store.capabilities.gateway_receives_uploads


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("gs://bucket", "unsupported blob store URL scheme"),
        ("s3://", "use s3://BUCKET"),
        ("s3://bucket/path", "use s3://BUCKET"),
        ("s3://bucket?endpoint=127.0.0.1:9000", "must be http(s)://host[:port]"),
        ("s3://bucket?endpont=http://x", "unknown option"),
    ],
)
def test_bad_blob_store_urls_name_the_problem(tmp_path: Path, url: str, message: str) -> None:
    with pytest.raises(BlobStoreConfigError, match=re.escape(message)):
        create_blob_store(url, "k", tmp_path / "key", "http://gw", ("ak", "sk"))


def test_s3_without_credentials_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(BlobStoreConfigError, match="FORGELINE_S3_ACCESS_KEY"):
        create_blob_store("s3://bucket?endpoint=http://127.0.0.1:9", "k", tmp_path / "key", "http://gw")
