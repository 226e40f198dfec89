"""Forge Logger ingest API (SPEC 4.1; seeds forge-logger-ingest-api.txt, forge-logger-sessions.txt).

POST /v1/ingest/sessions  → 201 {sessionId, buildId, startedAt}     raw.forge (one: build + session)
POST /v1/ingest/events    → 201 {accepted, eventIds}                raw.forge (one per request)
POST /v1/ingest/reports   → 201 {reportId, …}                       raw.forge
POST /v1/ingest/uploads   → 201 {uploads: [{uploadId, url, …}]}     nothing yet: a signed grant
PUT  /v1/blobs/{uploadId} → 201 {uploadId, size, sha256}            raw.forge (upload completion, local store)
POST /v1/blobs/{uploadId}/complete → 201 {uploadId, size, sha256}   raw.forge (upload completion, S3 store:
                            the client PUT the bytes to S3 itself; the gateway checks the object)

Order of checks: token (401), scope (403), rate limit (429), body (413, 400), content (400),
citations (403: a sessionId, eventId or uploadId that is not the token's project's).
The seed's status table has no 415, so a non-JSON content type is a 400 here.
Only a fully valid request is enqueued; every id is derived from input or the token, and
session, event and upload ids carry their project (forgeline.ids "owned" ids), so the
citation check needs no lookup.

An accepted events request is one raw record (envelope version 2, ``forgeline.schemas.game_raw``):
the body as accepted, embedded without a second serialization, the eventIds of the response,
the tenancy and the receive time; the normalizer splits it into one typed record per event.
Size: the body is at most ``max_inflated_bytes`` (4 MiB by default) and 200 ids add 8 KiB,
well under Kafka's 8 MiB request; a body above ``game_raw.SPLIT_BYTES`` (6 MiB, only with a
raised limit) is cut between events into a few such records. The partition key is the first
event's session (a single event keeps the key it always had; a retried request the same one).
A session request is one raw record too (its body once, the build and session ids), keyed by
the new session; the normalizer makes the build and the session of it.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from forgeline import mediatype
from forgeline.blobstore.grants import COMPLETE_PATH, UPLOAD_PATH
from forgeline.blobstore.port import (
    BlobStore,
    InvalidContentType,
    InvalidKey,
    SignatureError,
    StoredObject,
    TooLarge,
    UploadGrant,
    WrongContentType,
)
from forgeline.bus.port import OutgoingRecord
from forgeline.bus.topics import RAW_FORGE
from forgeline.clock import Clock
from forgeline.config import Settings
from forgeline.schemas import forge, game_ids, game_raw, game_structs
from forgeline.schemas.checks import Invalid, Problem
from forgeline.schemas.common import to_millis
from forgeline.tenancy.model import Principal, TenancyTable
from services.gateway.authlimit import AuthFailureLimit
from services.gateway.body import BodyLimits, parse_json, read_body
from services.gateway.errors import ApiError, JSONResponse
from services.gateway.publish import Publisher
from services.gateway.ratelimit import Decision, FixedWindowLimiter
from services.gateway.tokens import Refresh, check_token, unauthorized

SESSIONS_PATH = "/v1/ingest/sessions"
EVENTS_PATH = "/v1/ingest/events"
REPORTS_PATH = "/v1/ingest/reports"
UPLOADS_PATH = "/v1/ingest/uploads"
BLOB_PUT_PATH = UPLOAD_PATH + "/{upload_id}"


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _raw_record(envelope: dict[str, Any], record_id: uuid.UUID, key: bytes, body: Any) -> OutgoingRecord:
    """One raw.forge record: the request's shared envelope, this item's id and its body as sent."""
    return OutgoingRecord(RAW_FORGE, orjson.dumps({**envelope, "id": str(record_id), "body": body}), key=key)


def invalid(problems: Sequence[Problem]) -> ApiError:
    return ApiError(
        400,
        {
            "error": "Validation failed",
            "code": "validation_error",
            "details": [p.as_json() for p in problems],
        },
        reason="invalid",
    )


def _rate_limited(decision: Decision) -> ApiError:
    return ApiError(
        429,
        {"error": "Rate limited", "code": "rate_limited", "retry_after": decision.retry_after},
        reason="rate_limited",
        headers={**decision.headers(), "Retry-After": str(decision.retry_after)},
    )


def _bearer(request: Request) -> str:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" else ""


@dataclass
class ForgeApi:
    settings: Settings
    tenancy: TenancyTable
    publisher: Publisher
    clock: Clock
    blobs: BlobStore
    auth_failures: AuthFailureLimit
    # Reads the control topic to its end, for a token the table does not know yet.
    refresh_tokens: Refresh | None = None

    def __post_init__(self) -> None:
        s = self.settings
        self.limiter = FixedWindowLimiter(s.forge_rate_limit_requests, s.forge_rate_limit_period_seconds, self.clock)
        self.limits = BodyLimits(s.max_body_bytes, s.max_inflated_bytes, s.max_json_depth)

    def routes(self) -> list[Route]:
        return [
            Route(SESSIONS_PATH, self.sessions, methods=["POST"], name="forge_sessions"),
            Route(EVENTS_PATH, self.events, methods=["POST"], name="forge_events"),
            Route(REPORTS_PATH, self.reports, methods=["POST"], name="forge_reports"),
            Route(UPLOADS_PATH, self.uploads, methods=["POST"], name="forge_uploads"),
            Route(BLOB_PUT_PATH, self.put_blob, methods=["PUT"], name="forge_blob_put"),
            Route(COMPLETE_PATH, self.complete_blob, methods=["POST"], name="forge_blob_complete"),
        ]

    # --- shared steps ------------------------------------------------------------------

    async def principal(self, request: Request) -> Principal:
        """Only ``flg_`` logger tokens (seed "Token prefix"): a JWT or another family's key is 401."""
        checked = await check_token(self.tenancy, self.refresh_tokens, _bearer(request), ("forge",))
        # A guessing source: the shared per-source failure budget (authlimit.py).
        principal = self.auth_failures.authenticate(request, lambda: checked, _rate_limited)
        if not isinstance(principal, Principal):
            raise unauthorized({"error": "Missing or invalid token"}, principal)
        decision = self.limiter.hit(principal.token_id)
        if not decision.allowed:
            raise _rate_limited(decision)
        return principal

    async def body(self, request: Request) -> tuple[Any, bytes]:
        raw = await self.raw_body(request)
        return self.parse(raw), raw

    async def raw_body(self, request: Request) -> bytes:
        content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if content_type not in ("", "application/json", "text/plain") and not content_type.endswith("+json"):
            raise ApiError(
                400,
                {"error": f"Content-Type must be application/json, not {content_type!r}", "code": "invalid_json"},
                reason="bad_content_type",
            )
        return await read_body(request, self.limits)

    def parse(self, raw: bytes) -> Any:
        doc = parse_json(raw, self.limits)
        if doc is None:
            raise invalid([Problem("body", "is empty")])
        return doc

    def scope(self, items: Sequence[Any], principal: Principal) -> None:
        """403 (seed table) when a body names a project or environment the token is not for."""
        for item in items:
            if not isinstance(item, dict):
                continue
            project, environment = item.get("projectId"), item.get("environment")
            if (project is not None and project != principal.project_id) or (
                environment is not None and environment != principal.environment
            ):
                raise ApiError(
                    403,
                    {"error": "Token does not have access to this project/environment", "code": "forbidden"},
                    reason="forbidden",
                )

    def owned(self, docs: Sequence[Any], principal: Principal, keys: Sequence[str], batch: bool = False) -> None:
        """403 when a body cites a session, event or upload that is not the token's project's."""
        problems = [
            problem
            for n, doc in enumerate(docs)
            for problem in forge.foreign_references(doc, principal.project_id, keys, n if batch else None)
        ]
        if problems:
            raise ApiError(
                403,
                {
                    "error": "Token does not have access to this project/environment",
                    "code": "forbidden",
                    "details": [p.as_json() for p in problems[:100]],
                },
                reason="foreign_reference",
            )

    def context(self, principal: Principal) -> forge.ForgeContext:
        return forge.ForgeContext(
            principal.organisation_id,
            principal.project_id,
            principal.environment,
            datetime.fromtimestamp(round(self.clock.time(), 3), UTC),
        )

    def envelope(self, route: str, ctx: forge.ForgeContext, principal: Principal) -> dict[str, Any]:
        """The fields every raw record of one request shares (built once per request)."""
        return {
            "v": 1,
            "route": route,
            **ctx.tenant(),
            "token_id": principal.token_id,
            "received_at": to_millis(ctx.received_at),
        }

    def record(
        self, route: str, record_id: uuid.UUID, key: uuid.UUID, body: Any, ctx: forge.ForgeContext, principal: Principal
    ) -> OutgoingRecord:
        return _raw_record(self.envelope(route, ctx, principal), record_id, key.bytes, body)

    # --- routes ------------------------------------------------------------------------

    async def sessions(self, request: Request) -> Response:
        principal = await self.principal(request)
        doc, raw = await self.body(request)
        self.scope([doc], principal)
        info, check = forge.check_session(doc)
        if check.problems:
            raise invalid(check.problems)
        ctx = self.context(principal)
        session_id = forge.new_session_id(principal.project_id)
        build_id = forge.build_id(principal.project_id, info.version, info.platform, info.git_commit)
        envelope = {**ctx.tenant(), "token_id": principal.token_id, "received_at": to_millis(ctx.received_at)}
        value = game_raw.forge_session_value(envelope, raw, str(build_id), str(session_id))
        await self.publisher.publish([OutgoingRecord(RAW_FORGE, value, key=session_id.bytes)])
        body = {"sessionId": str(session_id), "buildId": str(build_id), "startedAt": _iso(ctx.received_at)}
        return JSONResponse(body, status_code=201)

    async def events(self, request: Request) -> Response:
        principal = await self.principal(request)
        raw = await self.raw_body(request)
        ctx = self.context(principal)
        # Compiled validation first; anything it does not accept gets today's validators,
        # which accept or refuse it with every problem named (game_structs.py).
        fast = game_structs.forge_events(raw, principal.project_id, principal.environment, self.limits.max_depth)
        if fast is not None:
            events, batch = fast
            count, first_session = len(events), events[0].sessionId
        else:
            count, first_session, batch = self.checked_events(raw, principal, ctx)
        digest = hashlib.sha256(raw).hexdigest()
        ids = game_ids.forge_event_ids(principal.project_id, principal.environment, digest, count)
        envelope = {**ctx.tenant(), "token_id": principal.token_id, "received_at": to_millis(ctx.received_at)}
        values = game_raw.forge_events_values(envelope, raw if batch else b"[" + raw + b"]", ids)
        key = uuid.UUID(first_session).bytes
        await self.publisher.publish([OutgoingRecord(RAW_FORGE, value, key=key) for value in values])
        return JSONResponse({"accepted": len(ids), "eventIds": ids}, status_code=201)

    def checked_events(self, raw: bytes, principal: Principal, ctx: forge.ForgeContext) -> tuple[int, str, bool]:
        """(events, first sessionId, was_batch) of an events body, or the 400/403 naming every problem."""
        doc = self.parse(raw)
        try:
            items, batch = forge.event_items(doc)
        except Invalid as err:
            raise invalid(err.problems) from None
        self.scope(items, principal)
        problems = forge.check_events(items, batch, ctx.received_at)
        if problems:
            raise invalid(problems)
        self.owned(items, principal, ("sessionId",), batch)
        return len(items), str(items[0]["sessionId"]), batch

    async def reports(self, request: Request) -> Response:
        principal = await self.principal(request)
        doc, _ = await self.body(request)
        self.scope([doc], principal)
        refs, check = forge.check_report(doc)
        if check.problems:
            raise invalid(check.problems)
        self.owned([doc], principal, forge.REPORT_CITATIONS)
        ctx = self.context(principal)
        crid = refs.client_request_id
        report_id = forge.report_id(principal.project_id, crid) if crid else uuid.uuid4()
        await self.publisher.publish([self.record("report", report_id, report_id, doc, ctx, principal)])
        # Only input-derived fields: the same request twice gets the same body (SPEC 4.1).
        body: dict[str, Any] = {
            "reportId": str(report_id),
            "sessionId": str(doc["sessionId"]),
            "clientRequestId": str(crid) if crid else None,
            "status": "received",
            "export": [{"provider": p, "status": "queued"} for p in refs.export],
        }
        return JSONResponse(body, status_code=201)

    async def uploads(self, request: Request) -> Response:
        principal = await self.principal(request)
        doc, _ = await self.body(request)
        self.scope([doc], principal)
        try:
            session_id, files = forge.check_uploads(doc, self.settings.upload_size_limits)
        except Invalid as err:
            raise invalid(err.problems) from None
        self.owned([doc], principal, ("sessionId",))
        issued_at = int(self.clock.time())
        expires_at = issued_at + self.settings.upload_url_ttl_seconds
        targets = []
        for file in files:
            upload_id = str(forge.new_upload_id(principal.project_id))
            grant = UploadGrant(
                upload_id=upload_id,
                key=f"{principal.project_id}/{upload_id}/{file.filename}",
                content_type=file.content_type,
                max_bytes=file.size,
                expires_at=expires_at,
                issued_at=issued_at,
                meta={
                    "organisation_id": principal.organisation_id,
                    "project_id": principal.project_id,
                    "environment": principal.environment,
                    "token_id": principal.token_id,
                    "session_id": session_id,
                    "attachment_type": file.attachment_type,
                    "filename": file.filename,
                },
            )
            try:
                target = self.blobs.upload_target(grant)
            except InvalidKey:  # the checks above make both unreachable; never a 500 if not
                raise invalid([Problem("filename", "cannot be stored")]) from None
            except InvalidContentType:
                raise invalid([Problem("contentType", "must be a media type")]) from None
            entry = {
                "uploadId": upload_id,
                "filename": file.filename,
                "type": file.attachment_type,
                "url": target.url,
                "method": target.method,
                "headers": target.headers,
                "expiresAt": _iso(target.expires_at),
            }
            if target.complete_url:
                # S3: the PUT goes to object storage; POST here afterwards to record it.
                entry["completeUrl"] = target.complete_url
            targets.append(entry)
        return JSONResponse({"uploads": targets}, status_code=201)

    def grant(self, request: Request, grace_seconds: int = 0) -> UploadGrant:
        """The grant of a gateway upload URL: the signature is the authorization (403 otherwise)."""
        try:
            grant = self.blobs.verify(request.query_params.get("token", ""), self.clock.time() - grace_seconds)
        except SignatureError:
            raise ApiError(
                403, {"error": "Upload URL is invalid or expired", "code": "forbidden"}, reason="forbidden"
            ) from None
        if grant.upload_id != request.path_params["upload_id"]:
            raise ApiError(403, {"error": "Upload URL is invalid", "code": "forbidden"}, reason="forbidden")
        return grant

    async def put_blob(self, request: Request) -> Response:
        """The PUT to a signed URL (local blob store)."""
        if not self.blobs.capabilities.gateway_receives_uploads:
            raise ApiError(404, {"error": "Uploads go to object storage", "code": "not_found"}, reason="not_found")
        grant = self.grant(request)
        if mediatype.essence(request.headers.get("content-type", "")) != mediatype.essence(grant.content_type):
            raise ApiError(
                400,
                {"error": f"Content-Type must be {grant.content_type}", "code": "wrong_content_type"},
                reason="bad_content_type",
            )
        declared = request.headers.get("content-length", "")
        if declared.isascii() and declared.isdigit() and int(declared) > grant.max_bytes:
            raise _upload_too_large(grant.max_bytes)
        try:
            stored = await self.blobs.receive(grant, _stream(request))
        except TooLarge:
            raise _upload_too_large(grant.max_bytes) from None
        except InvalidKey:
            raise _unstorable() from None
        except ClientDisconnect:
            raise ApiError(400, {"error": "Upload interrupted", "code": "disconnected"}, "disconnect") from None
        return await self.record_upload(grant, stored)

    async def complete_blob(self, request: Request) -> Response:
        """After the client PUT to object storage: check the object against its grant, record it.

        The token may be used for one TTL past the PUT URL's expiry, so an upload that ended
        just in time can still be completed. Calling it again records the same upload id again
        (the uploads table keeps one row per id).
        """
        grant = self.grant(request, grace_seconds=self.settings.upload_url_ttl_seconds)
        try:
            stored = await asyncio.to_thread(self.blobs.complete, grant)
        except InvalidKey:
            raise _unstorable() from None
        except FileNotFoundError:
            raise ApiError(
                400, {"error": "Nothing was uploaded to this URL yet", "code": "upload_missing"}, "upload_missing"
            ) from None
        except TooLarge:
            raise _upload_too_large(grant.max_bytes) from None
        except WrongContentType as err:
            raise ApiError(
                400,
                {
                    "error": f"Content-Type must be {grant.content_type}, the upload was {err.args[0]!r}",
                    "code": "wrong_content_type",
                },
                reason="bad_content_type",
            ) from None
        return await self.record_upload(grant, stored)

    async def record_upload(self, grant: UploadGrant, stored: StoredObject) -> Response:
        """The completion record reports reference (uploads table), and the 201 both paths give."""
        meta = grant.meta
        ctx = forge.ForgeContext(
            meta["organisation_id"],
            meta["project_id"],
            meta["environment"],
            datetime.fromtimestamp(round(self.clock.time(), 3), UTC),
        )
        completion = {
            "session_id": meta.get("session_id", ""),
            "attachment_type": meta["attachment_type"],
            "filename": meta["filename"],
            "content_type": stored.content_type,
            "size_bytes": stored.size,
            "sha256": stored.sha256,
            "storage_key": stored.key,
        }
        upload_id = uuid.UUID(grant.upload_id)
        value = self.record("upload", upload_id, upload_id, completion, ctx, _uploader(meta))
        await self.publisher.publish([value])
        return JSONResponse(
            {"uploadId": grant.upload_id, "size": stored.size, "sha256": stored.sha256}, status_code=201
        )


async def _stream(request: Request) -> AsyncIterator[bytes]:
    async for chunk in request.stream():
        if chunk:
            yield chunk


def _upload_too_large(limit: int) -> ApiError:
    return ApiError(
        413,
        {"error": f"Upload exceeds {limit} bytes", "code": "payload_too_large", "limit_bytes": limit},
        reason="too_large",
    )


def _unstorable() -> ApiError:
    """A grant signed before file names were checked, naming a key no store may hold."""
    return ApiError(
        400,
        {"error": "This upload's file name cannot be stored; request a new upload URL", "code": "invalid_filename"},
        reason="invalid",
    )


def _uploader(meta: dict[str, str]) -> Principal:
    return Principal(
        token_id=meta.get("token_id", ""),
        kind="forge",
        organisation_id=meta["organisation_id"],
        project_id=meta["project_id"],
        environment=meta["environment"],
        application_id=None,
    )
