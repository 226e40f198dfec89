"""Upload grants: any token a client sends is a valid grant or a SignatureError (→ 403), nothing else."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from minio import Minio

from forgeline.blobstore.grants import GrantSigner
from forgeline.blobstore.port import DownloadGrant, SignatureError, UploadGrant
from forgeline.blobstore.s3 import S3BlobStore

pytestmark = pytest.mark.unit

SIGNER = GrantSigner(b"k" * 32)
GRANT = UploadGrant("u1", "p/u1/shot.png", "image/png", 100, 2_000_000_000, {"project_id": "p"})
VALID = SIGNER.token(GRANT)


def test_a_signed_grant_round_trips() -> None:
    assert SIGNER.verify(VALID, 0) == GRANT


@pytest.mark.parametrize(
    "token",
    ["", ".", "a.", ".b", "a.é", "é.é", "\udcff.\udcff", "a\x00.b", VALID + "A", VALID[:-1], VALID.replace(".", "..")],
)
def test_malformed_tokens_are_signature_errors(token: str) -> None:
    with pytest.raises(SignatureError):
        SIGNER.verify(token, 0)


def test_another_key_or_expiry_is_refused() -> None:
    with pytest.raises(SignatureError):
        GrantSigner(b"x" * 32).verify(VALID, 0)
    with pytest.raises(SignatureError):
        SIGNER.verify(VALID, GRANT.expires_at)


@settings(max_examples=300, database=None, derandomize=True)
@given(st.text() | st.builds(lambda a, b: f"{a}.{b}", st.text(), st.text()))
def test_any_text_is_refused_with_a_signature_error(token: str) -> None:
    with pytest.raises(SignatureError):
        SIGNER.verify(token, 0)


def test_download_tokens_round_trip_and_are_not_upload_tokens() -> None:
    grant = DownloadGrant("p/u1/save.sav", "p", "save.sav", 2_000_000_000)
    token = SIGNER.download_token(grant)
    assert SIGNER.verify_download(token, 0) == grant
    with pytest.raises(SignatureError):
        SIGNER.verify(token, 0)  # a download URL cannot be used to upload
    with pytest.raises(SignatureError):
        SIGNER.verify_download(VALID, 0)  # nor an upload URL to download
    with pytest.raises(SignatureError):
        SIGNER.verify_download(token, grant.expires_at)
    with pytest.raises(SignatureError):
        GrantSigner(b"x" * 32).verify_download(token, 0)


def test_s3_downloads_are_presigned_gets_that_answer_as_an_attachment() -> None:
    client = Minio("s3.test:9000", "access", "secret-key", secure=False, region="us-east-1")
    store = S3BlobStore(client, "bucket", b"k" * 32, "http://gateway.test")
    url = urlsplit(store.download_url(DownloadGrant("p/u1/a b.sav", "p", 'a"b.html', 2_000_000_000, 1_999_999_000)))
    query = parse_qs(url.query)
    assert url.path == "/bucket/p/u1/a%20b.sav"
    assert query["X-Amz-Expires"] == ["1000"] and query["X-Amz-Signature"]
    assert query["response-content-disposition"] == ['attachment; filename="a_b.html"']
    assert query["response-content-type"] == ["application/octet-stream"]
