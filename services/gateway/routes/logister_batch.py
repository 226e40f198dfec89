"""POST /api/v1/ingest_events/batch — Logister's batch route, as logister-python uses it.

Body: NDJSON, one ``{"event": {...}}`` per line, plain or gzip. Every line needs a stable
identity (``uuid`` or ``event_id``, a UUID) so that a retried batch stores nothing new.
Atomic: either every envelope is valid and all are enqueued (202, per-line results in
line order), or nothing is (400 for a malformed batch, 422 with per-line results).

A line is one event, so it may be as large as the single-event route lets an event be
(``max_line_bytes``: its body limit, or its inflated limit for a compressed body; 4 MiB by
default) and no larger: a larger line is that line's own error in the 422, as any invalid
line is. So every record stays within a Kafka request (8 MiB) at the default limits.

An accepted batch is one ``raw.logister`` record (``"v": 2``, forgeline.schemas.logister_raw):
each line as received, its id and its receive time. A batch above the record budget (4 MiB
of lines; a batch may inflate to 16 MiB, a Kafka record must fit 8 MiB) is cut into a few
consecutive records instead; each is keyed by its first event id.

Each line is checked first by the compiled fast path (forgeline.schemas.logister_fast); a
line it cannot prove valid goes through the full validator, which writes the errors.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from datetime import datetime
from typing import Any

import msgspec
import orjson
from starlette.requests import Request
from starlette.responses import Response

from forgeline.config import Settings
from forgeline.ids import legacy_id
from forgeline.schemas import logister, logister_fast, logister_raw
from forgeline.schemas.common import json_depth_exceeds, to_millis
from services.gateway.body import read_body
from services.gateway.errors import ApiError, JSONResponse
from services.gateway.routes.logister_steps import LogisterSteps, seen_id

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


def max_line_bytes(settings: Settings) -> int:
    """The largest event the single-event route accepts, and so the largest batch line.

    A plain body is cut at ``max_body_bytes``, a gzip or deflate one at ``max_inflated_bytes``
    once inflated: an event sent alone can be as large as the larger of the two.
    """
    return max(settings.max_body_bytes, settings.max_inflated_bytes)


def _identify(
    number: int, text: bytes, max_depth: int, headers: dict[str, str]
) -> tuple[dict[str, Any] | None, uuid.UUID]:
    """A line's id, and its content when only the full validator can judge it (None: valid)."""
    event_id = logister_fast.accepted_event_id(text, max_depth)
    if event_id is not None:
        return None, event_id
    return _parse_line(number, text, max_depth, headers)


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
    lines = [stripped for line in body.split(b"\n") if (stripped := line.strip())]
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

    depth = api.settings.max_json_depth
    max_line = max_line_bytes(api.settings)
    parsed = [_identify(n, text, depth, headers) for n, text in enumerate(lines, 1)]
    now = api.now()
    now_ms = to_millis(now)
    results: list[dict[str, Any]] = []
    accepted: list[logister_raw.AcceptedItem] = []
    received: list[tuple[str, datetime]] = []
    project = principal.project_id
    seen = [seen_id(project, event_id) for _, event_id in parsed]
    invalid = False
    for number, ((raw, event_id), text, key) in enumerate(zip(parsed, lines, seen, strict=True), 1):
        received_at = api.received_at(key, now)
        if len(text) > max_line:
            invalid = True
            errors = [f"Event is larger than {max_line} bytes, the limit for one event"]
            results.append({"line": number, "id": str(event_id), "status": "rejected", "errors": errors})
            continue
        if raw is not None:
            try:
                logister.normalize_event(raw, api.ingest_context(principal, event_id, received_at))
            except logister.Invalid as err:
                invalid = True
                results.append({"line": number, "id": str(event_id), "status": "rejected", "errors": err.errors})
                continue
        # The id stays a UUID: the response (orjson) and the record (msgspec) write it in C.
        results.append({"line": number, "id": event_id, "status": "rolled_back"})
        millis = now_ms if received_at is now else to_millis(received_at)
        accepted.append(logister_raw.AcceptedItem(event_id, millis, msgspec.Raw(text)))
        received.append((key, received_at))
    if invalid:
        for result in results:
            result["id"] = str(result["id"])
        raise ApiError(422, {"status": "rejected", "results": results}, reason="invalid", headers=headers)

    await api.publish_batch(principal, accepted, received)
    duplicates = 0
    for result, (_, event_id), key in zip(results, parsed, seen, strict=True):
        duplicate = key in api.recent_ids
        duplicates += duplicate
        api.recent_ids.add(key)
        result.update({"status": "accepted", "legacy_id": legacy_id(event_id), "duplicate": duplicate})
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
