"""Upload grants: any token a client sends is a valid grant or a SignatureError (→ 403), nothing else."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from forgeline.blobstore.grants import GrantSigner
from forgeline.blobstore.port import SignatureError, UploadGrant

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
