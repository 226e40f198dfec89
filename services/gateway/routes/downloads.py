"""GET /v1/blob-downloads?token=… — the local blob store's signed download URL.

The console makes the URL (after its own check that the user may see the project) for one
object of one project, valid for a few minutes; the signature is the authorization here.
The answer is always a download: ``Content-Disposition: attachment``, a neutral content type,
``nosniff`` and a sandboxing CSP, so a stored HTML or SVG file is never rendered by the
browser on the gateway's origin. With an S3 store the URL is a pre-signed GET to S3 and this
route answers 404.
"""

from __future__ import annotations

import asyncio
import time

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from forgeline.blobstore.grants import DOWNLOAD_PATH
from forgeline.blobstore.local import LocalBlobStore
from forgeline.blobstore.port import BlobStore, InvalidKey, SignatureError, download_name

DOWNLOAD_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; sandbox",
    "Cache-Control": "private, no-store",
}


def _refused(status: int, error: str, code: str) -> Response:
    return JSONResponse({"error": error, "code": code}, status_code=status, headers=DOWNLOAD_HEADERS)


def download_routes(blobs: BlobStore) -> list[Route]:
    async def download(request: Request) -> Response:
        if not isinstance(blobs, LocalBlobStore):
            return _refused(404, "Downloads come from object storage", "not_found")
        try:
            grant = blobs.verify_download(request.query_params.get("token", ""), time.time())
        except SignatureError:
            return _refused(403, "Download URL is invalid or has expired", "forbidden")
        # Keys are "<project id>/…": a grant names its project, and reaches nothing outside it.
        if grant.key.split("/", 1)[0] != grant.project_id:
            return _refused(403, "Download URL is invalid or has expired", "forbidden")
        try:
            path = blobs.file_path(grant.key)
            if not await asyncio.to_thread(path.is_file):
                raise FileNotFoundError(grant.key)
        except (InvalidKey, ValueError, FileNotFoundError):
            return _refused(404, "The file is not in the store", "not_found")
        return FileResponse(
            path,
            media_type="application/octet-stream",
            headers={
                "Content-Disposition": f'attachment; filename="{download_name(grant.filename)}"',
                **DOWNLOAD_HEADERS,
            },
        )

    return [Route(DOWNLOAD_PATH, download, methods=["GET"], name="blob_download")]
