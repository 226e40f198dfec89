"""MessagePack game analytics API (SPEC 4.2; seed msgpack-game-analytics-api.txt).

POST /api/events (+ /api/player, /api/funnel, /api/realtime)  → 200 {"status":"queued"}  raw.msgpack
POST /api/models (secret key; multipart app_name, level_name, model_file)
                                                 → 200 {"status":"queued", "model_id"…}  blob store + raw.msgpack
POST /api/export (no token unless FORGELINE_EXPORT_REQUIRES_SECRET_KEY)
                                                 → 200 {"status":"queued"}  one control.exporter record
POST /api/sql/select                                         → 501 {"error":"sql_unavailable"}

Order of checks: the per-source-IP limit (429; X-Forwarded-For only from trusted proxies),
the token (401), content type (415 for JSON), body (413, 400), app scope (403), items (400).
A batch is all-or-nothing: one bad item, or one item for another application, and
nothing of it is enqueued.

An accepted events request is one raw record (envelope version 2, ``forgeline.schemas.game_raw``):
the MessagePack body as accepted (base64), the tenancy, the receive time and the body's digest,
from which the normalizer derives each item's id exactly as one record per item carried it;
it splits the record into one typed record per item. Size: the body is at most
``max_msgpack_body_bytes`` (4 MiB by default), 5.4 MiB as base64, under Kafka's 8 MiB request;
above ``game_raw.SPLIT_BYTES`` (6 MiB, only with a raised limit) the items are cut into a few
such records. The partition key is the first item's ``app_id/session_id`` (or player), the key
a single item always had; a retried request gets the same one.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Message, Receive

from forgeline.blobstore.port import BlobStore, TooLarge, UploadGrant
from forgeline.bus.port import OutgoingRecord
from forgeline.bus.topics import CONTROL_EXPORTER, RAW_MSGPACK
from forgeline.clientip import ClientAddress
from forgeline.clock import Clock
from forgeline.config import Settings
from forgeline.schemas import game_raw, game_structs, msgpack
from forgeline.schemas.checks import Invalid, Problem
from forgeline.schemas.common import to_millis
from forgeline.tenancy.model import Principal, Refusal, TenancyTable, TokenKind
from services.gateway.authlimit import AuthFailureLimit
from services.gateway.body import BodyLimits, read_body
from services.gateway.errors import ApiError, JSONResponse
from services.gateway.publish import Publisher
from services.gateway.ratelimit import Decision, FixedWindowLimiter
from services.gateway.tokens import Refresh, check_token, unauthorized

EVENT_PATHS = ("/api/events", "/api/player", "/api/funnel", "/api/realtime")
SQL_PATH = "/api/sql/select"
MODELS_PATH = "/api/models"
EXPORT_PATH = "/api/export"
MSGPACK_TYPES = ("application/msgpack", "application/x-msgpack", "application/vnd.msgpack")


def _invalid(problems: list[Problem]) -> ApiError:
    return ApiError(
        400,
        {"error": "invalid_payload", "details": [p.as_json() for p in problems[:100]], "problems": len(problems)},
        reason="invalid",
    )


def _unauthorized(refusal: Principal | Refusal | None) -> ApiError:
    return unauthorized({"error": "unauthorized"}, refusal)


def _rate_limited(decision: Decision) -> ApiError:
    return ApiError(
        429,
        {"error": "rate_limited", "retry_after": decision.retry_after},
        reason="rate_limited",
        headers={**decision.headers(), "Retry-After": str(decision.retry_after)},
    )


def _forbidden(message: str) -> ApiError:
    return ApiError(403, {"error": "forbidden", "message": message}, reason="forbidden")


@dataclass
class MsgpackApi:
    settings: Settings
    tenancy: TenancyTable
    publisher: Publisher
    clock: Clock
    client_address: ClientAddress
    blobs: BlobStore
    auth_failures: AuthFailureLimit
    # Reads the control topic to its end, for a token the table does not know yet.
    refresh_tokens: Refresh | None = None

    def __post_init__(self) -> None:
        s = self.settings
        self.limiter = FixedWindowLimiter(
            s.msgpack_rate_limit_requests, s.msgpack_rate_limit_period_seconds, self.clock
        )
        self.limits = BodyLimits(s.max_msgpack_body_bytes, s.max_msgpack_body_bytes, s.max_json_depth)
        self._export_published_at = float("-inf")  # monotonic time of the last flush request sent

    def routes(self) -> list[Route]:
        ingest = [
            Route(path, self.ingest, methods=["POST"], name=f"msgpack_{path.rsplit('/', 1)[1]}") for path in EVENT_PATHS
        ]
        return [
            *ingest,
            Route(MODELS_PATH, self.models, methods=["POST"], name="msgpack_models"),
            Route(EXPORT_PATH, self.export, methods=["POST"], name="msgpack_export"),
            Route(SQL_PATH, self.sql_select, methods=["POST"], name="msgpack_sql_select"),
        ]

    def rate_limit(self, request: Request) -> None:
        decision = self.limiter.hit(self.client_address.of(request))
        if not decision.allowed:
            raise _rate_limited(decision)

    async def authenticate(self, request: Request, kinds: tuple[TokenKind, ...]) -> Principal:
        """``x-public-token``; legacy fallback: the same token in ``x-api-key`` (seed "Authentication")."""
        headers = [request.headers.get(header, "").strip() for header in ("x-public-token", "x-api-key")]
        checked = await self._first_accepted(headers, kinds)
        principal = self.auth_failures.authenticate(request, lambda: checked, _rate_limited)
        if not isinstance(principal, Principal):
            raise _unauthorized(principal)
        return principal

    async def _first_accepted(self, candidates: list[str], kinds: tuple[TokenKind, ...]) -> Principal | Refusal:
        """The first candidate accepted, else the first presented one's refusal."""
        refusal: Refusal | None = None
        for token in candidates:
            if token:
                checked = await check_token(self.tenancy, self.refresh_tokens, token, kinds)
                if isinstance(checked, Principal):
                    return checked
                refusal = refusal or checked
        return refusal or Refusal("missing_token")

    async def ingest(self, request: Request) -> Response:
        self.rate_limit(request)
        principal = await self.authenticate(request, ("msgpack_public",))
        content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if content_type and content_type not in MSGPACK_TYPES:
            # Seed: "Explicit JSON requests are rejected with 415"; any other explicit type too.
            raise ApiError(
                415,
                {"error": "unsupported_media_type", "message": "Content-Type must be application/msgpack"},
                reason="bad_content_type",
            )
        raw = await read_body(request, self.limits)
        app_id = principal.application_id or ""
        # Compiled validation first; anything it does not accept gets today's validators,
        # which accept or refuse it with every problem named (game_structs.py).
        fast = game_structs.msgpack_items(raw, app_id, self.settings.max_json_depth, self.settings.max_msgpack_items)
        partition: object
        if fast is not None:
            partition = fast[0].session_id or fast[0].player_id
        else:
            first = self.checked_items(raw, app_id)
            partition = first.get("session_id") or first.get("player_id")
        received_at = to_millis(datetime.fromtimestamp(self.clock.time(), UTC))
        envelope = {
            "organisation_id": principal.organisation_id,
            "project_id": principal.project_id,
            "environment": principal.environment,
            "app_id": app_id,
            "token_id": principal.token_id,
            "received_at": received_at,
        }
        values = game_raw.msgpack_events_values(envelope, raw, hashlib.sha256(raw).hexdigest())
        key = f"{app_id}/{partition}".encode()
        await self.publisher.publish([OutgoingRecord(RAW_MSGPACK, value, key=key) for value in values])
        return JSONResponse({"status": "queued"}, status_code=200)

    def checked_items(self, raw: bytes, app_id: str) -> dict[str, Any]:
        """The first item of an events body, or the 400/403 refusing the whole batch."""
        try:
            docs, batch = msgpack.items(msgpack.decode(raw, self.settings.max_json_depth))
        except Invalid as err:
            raise _invalid(err.problems) from None
        if len(docs) > self.settings.max_msgpack_items:
            raise _invalid([Problem("body", f"holds {len(docs)} events; at most {self.settings.max_msgpack_items}")])
        foreign = msgpack.foreign_app_ids(docs, app_id)
        if foreign:
            raise _forbidden(f"app_id of item {foreign[0]} does not match the token's application")
        problems = msgpack.check_items(docs, batch)
        if problems:
            raise _invalid(problems)
        first: dict[str, Any] = docs[0]
        return first

    async def export(self, request: Request) -> Response:
        """Ask the exporter to flush what it buffers (seed "Other Endpoints"): one control record.

        Coalesced: within ``export_request_interval_seconds`` of the last request this gateway
        sent, another is answered the same without appending anything (the flush it asked for
        covers this caller too); the exporter also folds the requests it reads together into
        one flush. The per-IP limit of the family applies. The gateway touches no storage.
        """
        self.rate_limit(request)
        if self.settings.export_requires_secret_key:
            principal = await self._secret_or_bearer(request)
            if not isinstance(principal, Principal):
                raise _unauthorized(principal)
            if principal.kind != "msgpack_secret":
                raise _forbidden("export needs the application's secret key, not its public token")
        now = self.clock.monotonic()
        if now - self._export_published_at < self.settings.export_request_interval_seconds:
            return JSONResponse({"status": "queued", "coalesced": True}, status_code=200)
        previous, self._export_published_at = self._export_published_at, now  # claimed before awaiting
        value = {"v": 1, "action": "flush", "requested_at": to_millis(datetime.fromtimestamp(self.clock.time(), UTC))}
        try:
            await self.publisher.publish([OutgoingRecord(CONTROL_EXPORTER, orjson.dumps(value))])
        except ApiError:
            self._export_published_at = previous  # not sent: the next caller must try again
            raise
        return JSONResponse({"status": "queued", "coalesced": False}, status_code=200)

    async def sql_select(self, request: Request) -> Response:
        """Disabled by design (seed "Other Endpoints"), but only answered to an authenticated caller."""
        self.rate_limit(request)
        principal = await self._secret_or_bearer(request)
        if not isinstance(principal, Principal):
            raise _unauthorized(principal)
        return JSONResponse({"error": "sql_unavailable"}, status_code=501)

    async def _secret_or_bearer(self, request: Request) -> Principal | Refusal | None:
        """The secret key (or a public token), counted against the source's failure budget."""
        candidates = [request.headers.get("x-api-key", "").strip()]
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer":
            candidates.append(value.strip())
        checked = await self._first_accepted(candidates, ("msgpack_secret", "msgpack_public"))
        return self.auth_failures.authenticate(request, lambda: checked, _rate_limited)

    async def models(self, request: Request) -> Response:
        """A level model: secret key only (a public token is 403), stored whole or not at all."""
        self.rate_limit(request)
        principal = await self._secret_or_bearer(request)
        if not isinstance(principal, Principal):
            raise _unauthorized(principal)
        if principal.kind != "msgpack_secret":
            raise _forbidden("model upload needs the application's secret key, not its public token")
        limit = self.settings.max_model_bytes
        declared = request.headers.get("content-length", "")
        if declared.isascii() and declared.isdigit() and int(declared) > limit:
            raise _model_too_large(limit)
        if not request.headers.get("content-type", "").lower().startswith("multipart/form-data"):
            raise ApiError(
                415, {"error": "unsupported_media_type", "message": "send multipart/form-data"}, "bad_content_type"
            )
        capped = Request(request.scope, _capped_receive(request.receive, limit))
        try:
            async with capped.form(max_files=1, max_fields=8) as form:
                app_name, level_name, upload = form.get("app_name"), form.get("level_name"), form.get("model_file")
                problems = [
                    Problem(name, "is required")
                    for name, value in (("app_name", app_name), ("level_name", level_name))
                    if not isinstance(value, str) or not value.strip() or len(value) > 256
                ]
                if not isinstance(upload, UploadFile):
                    problems.append(Problem("model_file", "is required (a file part)"))
                if problems:
                    raise _invalid(problems)
                assert isinstance(app_name, str) and isinstance(level_name, str) and isinstance(upload, UploadFile)
                application = self.tenancy.applications.get(principal.application_id or "")
                if application is None:
                    raise _forbidden("app_name is not the key's application")
                if application.name != app_name:
                    # The key's own application: its holder may learn the name it must send.
                    raise _forbidden(f"app_name must be the key's application, {application.name!r}")
                app_id = application.id
                grant = UploadGrant(
                    upload_id=f"{app_id}-{level_name}",
                    key=f"{principal.project_id}/models/{app_id}/{uuid.uuid4()}",
                    content_type=upload.content_type or "application/octet-stream",
                    max_bytes=limit,
                    expires_at=0,
                )
                stored = await self.blobs.receive(grant, _file_chunks(upload))
                filename = upload.filename or "model"
        except TooLarge:
            raise _model_too_large(limit) from None
        except MultiPartException as err:
            raise _invalid([Problem("body", f"bad multipart body: {err.message}")]) from None
        mid = msgpack.model_id(principal.project_id, app_id, level_name, stored.sha256)
        value = {
            "v": 1,
            "route": "model",
            "id": str(mid),
            "organisation_id": principal.organisation_id,
            "project_id": principal.project_id,
            "environment": principal.environment,
            "app_id": app_id,
            "token_id": principal.token_id,
            "received_at": to_millis(datetime.fromtimestamp(self.clock.time(), UTC)),
            "body": {
                "app_name": app_name,
                "level_name": level_name,
                "filename": filename,
                "content_type": stored.content_type,
                "size_bytes": stored.size,
                "sha256": stored.sha256,
                "storage_key": stored.key,
            },
        }
        await self.publisher.publish([OutgoingRecord(RAW_MSGPACK, orjson.dumps(value), key=mid.bytes)])
        body = {"status": "queued", "model_id": str(mid), "sha256": stored.sha256, "size_bytes": stored.size}
        return JSONResponse(body, status_code=200)


def _model_too_large(limit: int) -> ApiError:
    return ApiError(413, {"error": "payload_too_large", "limit_bytes": limit}, reason="too_large")


def _capped_receive(receive: Receive, limit: int) -> Receive:
    """The request's receive, refusing (TooLarge) once more than ``limit`` body bytes arrived."""
    seen = 0

    async def capped() -> Message:
        nonlocal seen
        message = await receive()
        seen += len(message.get("body", b""))
        if seen > limit:
            raise TooLarge(limit)
        return message

    return capped


async def _file_chunks(upload: UploadFile) -> AsyncIterator[bytes]:
    while chunk := await upload.read(64 * 1024):
        yield chunk
