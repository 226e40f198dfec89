"""POST /api/v1/ingest_events/batch — Logister's batch route, as logister-python uses it.

Body: NDJSON, one ``{"event": {...}}`` per line, plain or gzip. Every line needs a stable
identity (``uuid`` or ``event_id``, a UUID) so that a retried batch stores nothing new.
Atomic: either every envelope is valid and all are enqueued (202, per-line results in
line order), or nothing is (400 for a malformed batch, 422 with per-line results).
"""

from __future__ import annotations

import hashlib
import re
import uuid
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from forgeline.ids import legacy_id
from forgeline.schemas import logister
from forgeline.schemas.common import json_depth_exceeds
from services.gateway.body import read_body
from services.gateway.errors import ApiError, JSONResponse
from services.gateway.routes.logister_steps import LogisterSteps

BATCH_PATH = "/api/v1/ingest_events/batch"
NDJSON_TYPES = ("application/x-ndjson", "application/ndjson", "application/jsonl", "application/x-jsonlines")
_BATCH_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def _bad_batch(code: str, message: str, headers: dict[str, str], line: int | None = None) -> ApiError:
    body: dict[str, Any] = {"code": code, "error": message}
    if line is not None:
        body["line"] = line
    return ApiError(400, body, reason=code, headers=headers)


def _parse_line(number: int, text: bytes, max_depth: int, headers: dict[str, str]) -> tuple[dict[str, Any], uuid.UUID]:
    try:
        doc = orjson.loads(text)
    except orjson.JSONDecodeError as err:
        raise _bad_batch("invalid_envelope", f"line {number} is not JSON: {err}", headers, number) from None
    if json_depth_exceeds(doc, max_depth):
        raise _bad_batch("invalid_envelope", f"line {number} nests deeper than {max_depth} levels", headers, number)
    try:
        raw = logister.extract_envelope(doc, logister.EVENT_ENVELOPES)
    except logister.MissingEnvelope:
        raise _bad_batch(
            "invalid_envelope", f'line {number} is not an object envelope {{"event": {{...}}}}', headers, number
        ) from None
    identity = raw.get("uuid", raw.get("event_id"))
    if identity is None or identity == "":
        raise _bad_batch("missing_identity", f"line {number} has no uuid or event_id", headers, number)
    try:
        return raw, uuid.UUID(str(identity))
    except ValueError:
        raise _bad_batch("invalid_identity", f"line {number}: {identity!r} is not a UUID", headers, number) from None


async def ingest_batch(api: LogisterSteps, request: Request) -> Response:
    principal = await api.principal(request)
    content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if content_type not in NDJSON_TYPES:
        raise ApiError(
            415,
            {
                "code": "unsupported_content_type",
                "error": f"send application/x-ndjson, not {content_type or 'nothing'!r}",
            },
            reason="bad_content_type",
        )
    body = await read_body(request, api.batch_limits)
    lines = [line for line in body.split(b"\n") if line.strip()]
    if not lines:
        raise _bad_batch("empty_batch", "the batch has no lines", {})
    if len(lines) > api.settings.max_batch_lines:
        raise ApiError(
            413,
            {
                "code": "too_many_lines",
                "error": f"a batch holds at most {api.settings.max_batch_lines} lines, this one has {len(lines)}",
            },
            reason="too_large",
        )
    # Every envelope counts against the per-token limit; a batch that does not fit is refused whole.
    decision = api.limit(principal, "ingest_events", cost=len(lines))
    headers = decision.headers()

    parsed = [_parse_line(n, text, api.settings.max_json_depth, headers) for n, text in enumerate(lines, 1)]
    results: list[dict[str, Any]] = []
    accepted: list[tuple[dict[str, Any], logister.IngestContext]] = []
    invalid = False
    for number, (raw, event_id) in enumerate(parsed, 1):
        ctx = api.ingest_context(principal, event_id)
        try:
            logister.normalize_event(raw, ctx)
        except logister.Invalid as err:
            invalid = True
            results.append({"line": number, "id": str(event_id), "status": "rejected", "errors": err.errors})
            continue
        results.append({"line": number, "id": str(event_id), "status": "rolled_back"})
        accepted.append((raw, ctx))
    if invalid:
        raise ApiError(422, {"status": "rejected", "results": results}, reason="invalid", headers=headers)

    await api.publish_raw("ingest_events", [(raw, ctx) for raw, ctx in accepted], principal)
    duplicates = 0
    for result, (_, ctx) in zip(results, accepted, strict=True):
        seen_key = f"{principal.project_id}:{ctx.event_id}"
        duplicate = seen_key in api.recent_ids
        duplicates += duplicate
        api.recent_ids.add(seen_key)
        result.update({"status": "accepted", "legacy_id": legacy_id(ctx.event_id), "duplicate": duplicate})
    batch_id = request.headers.get("x-logister-batch-id", "")
    if not _BATCH_ID.match(batch_id):
        batch_id = hashlib.sha256(body).hexdigest()
    return JSONResponse(
        {
            "schema_version": 1,
            "batch_id": batch_id,
            "status": "accepted",
            "accepted": len(accepted),
            "duplicates": duplicates,
            "results": results,
        },
        status_code=202,
        headers=headers,
    )
