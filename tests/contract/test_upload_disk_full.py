"""An upload that finds the disk full is a 503 with Retry-After, never a 500, and leaves nothing."""

from __future__ import annotations

import errno
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from forgeline.blobstore.local import LocalBlobStore
from forgeline.blobstore.port import UploadGrant
from tests.conftest import GatewayHarness
from tests.contract.test_forge_routes import _create_upload, _put

pytestmark = pytest.mark.contract


def test_upload_hitting_enospc_is_503_with_retry_after(
    gateway: GatewayHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = _create_upload(gateway)
    real_receive = LocalBlobStore.receive

    async def full_disk(self: LocalBlobStore, grant: UploadGrant, chunks: AsyncIterator[bytes]) -> object:
        async def failing() -> AsyncIterator[bytes]:
            async for chunk in chunks:
                yield chunk
            raise OSError(errno.ENOSPC, "No space left on device")

        return await real_receive(self, grant, failing())

    monkeypatch.setattr(LocalBlobStore, "receive", full_disk)
    response = _put(gateway, target, b"x" * 100)
    assert response.status_code == 503, response.text
    assert response.headers["Retry-After"] == "10"
    assert "disk" in response.json()["error"]
    blobs = Path(gateway.settings.data_dir / "blobs")
    assert [p for p in blobs.rglob("*") if p.is_file() and "key" not in p.name] == []
    # Other I/O errors stay what they are: a server fault, answered 500 and logged.
    monkeypatch.setattr(LocalBlobStore, "receive", _raises_eio)
    assert _put(gateway, _create_upload(gateway), b"x").status_code == 500


async def _raises_eio(self: LocalBlobStore, grant: UploadGrant, chunks: AsyncIterator[bytes]) -> object:
    raise OSError(errno.EIO, "Input/output error")
