"""Logister HTTP API (SPEC 4.3; seeds logister-http-api*.txt).

POST /api/v1/ingest_events  {"event": {...}}     → raw.logister
POST /api/v1/check_ins      {"check_in": {...}}  → raw.logister

Order of checks, as Logister does it: authenticate (401, or 429 once a source address
has failed too often), the per-token-and-endpoint limit (429), then the body (413, 415,
400), then the envelope content (422). Only a fully valid payload is enqueued.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from forgeline.bus.port import OutgoingRecord
from forgeline.bus.topics import RAW_LOGISTER
from forgeline.clock import Clock
from forgeline.config import Settings
from forgeline.ids import legacy_id
from forgeline.schemas import logister
from forgeline.schemas.common import to_millis
from forgeline.tenancy.model import Principal, TenancyTable
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from services.gateway.body import BodyLimits, parse_json, read_body, require_json_content_type
from services.gateway.clientip import ClientAddress
from services.gateway.errors import ApiError, JSONResponse
from services.gateway.publish import Publisher
from services.gateway.ratelimit import Decision, FixedWindowLimiter

INGEST_EVENTS_PATH = "/api/v1/ingest_events"
CHECK_INS_PATH = "/api/v1/check_ins"


def presented_token(request: Request) -> str | None:
    """``Authorization: Bearer <token>`` or ``X-Api-Key: <token>`` (seed "Authentication")."""
    authorization = request.headers.get("authorization", "")
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    api_key = request.headers.get("x-api-key", "").strip()
    return api_key or None


def _rate_limited(decision: Decision) -> ApiError:
    return ApiError(
        429,
        {
            "error": "Rate limit exceeded",
            "limit": decision.limit,
            "window_seconds": decision.window_seconds,
            "retry_after": decision.retry_after,
        },
        reason="rate_limited",
        headers={**decision.headers(), "Retry-After": str(decision.retry_after)},
    )


@dataclass
class LogisterApi:
    settings: Settings
    tenancy: TenancyTable
    publisher: Publisher
    clock: Clock
    client_address: ClientAddress

    def __post_init__(self) -> None:
        s = self.settings
        self.request_limiter = FixedWindowLimiter(
            s.logister_rate_limit_requests, s.logister_rate_limit_period_seconds, self.clock
        )
        self.auth_failure_limiter = FixedWindowLimiter(
            s.auth_failure_rate_limit_requests, s.auth_failure_period_seconds, self.clock
        )
        self.event_limits = BodyLimits(s.max_body_bytes, s.max_inflated_bytes, s.max_json_depth)
        self.check_in_limits = BodyLimits(s.max_check_in_body_bytes, s.max_inflated_bytes, s.max_json_depth)

    def routes(self) -> list[Route]:
        return [
            Route(INGEST_EVENTS_PATH, self.ingest_event, methods=["POST"], name="logister_ingest_events"),
            Route(CHECK_INS_PATH, self.check_in, methods=["POST"], name="logister_check_ins"),
        ]

    def authenticate(self, request: Request, endpoint: str) -> tuple[Principal, Decision]:
        token = presented_token(request)
        principal = self.tenancy.authenticate(token, ("logister",)) if token else None
        if principal is None:
            failures = self.auth_failure_limiter.hit(self.client_address.of(request))
            if not failures.allowed:
                raise _rate_limited(failures)
            raise ApiError(401, {"error": "Unauthorized"}, reason="unauthorized")
        decision = self.request_limiter.hit(f"{principal.token_id}:{endpoint}")
        if not decision.allowed:
            raise _rate_limited(decision)
        return principal, decision

    async def _envelope(
        self, request: Request, limits: BodyLimits, names: tuple[str, str], headers: dict[str, str]
    ) -> dict[str, Any]:
        try:
            require_json_content_type(request)
            doc = parse_json(await read_body(request, limits), limits)
            return logister.extract_envelope(doc, names)
        except ApiError as err:
            err.headers.update(headers)
            raise
        except logister.MissingEnvelope as err:
            raise ApiError(400, {"error": str(err)}, reason="missing_envelope", headers=headers) from None

    def _context(self, principal: Principal, event_id: uuid.UUID) -> logister.IngestContext:
        return logister.IngestContext(
            event_id=event_id,
            organisation_id=principal.organisation_id,
            project_id=principal.project_id,
            default_environment=principal.environment,
            received_at=datetime.fromtimestamp(self.clock.time(), UTC),
        )

    async def _accept(self, route: str, raw: dict[str, Any], ctx: logister.IngestContext, principal: Principal) -> None:
        value = orjson.dumps(
            {
                "v": 1,
                "route": route,
                "event_id": str(ctx.event_id),
                "organisation_id": ctx.organisation_id,
                "project_id": ctx.project_id,
                "environment": ctx.default_environment,
                "token_id": principal.token_id,
                "received_at": to_millis(ctx.received_at),
                "body": raw,
            }
        )
        await self.publisher.publish([OutgoingRecord(RAW_LOGISTER, value, key=ctx.event_id.bytes)])

    async def ingest_event(self, request: Request) -> Response:
        principal, decision = self.authenticate(request, "ingest_events")
        headers = decision.headers()
        raw = await self._envelope(request, self.event_limits, logister.EVENT_ENVELOPES, headers)
        try:
            event_id = logister.client_event_id(raw) or uuid.uuid4()
            ctx = self._context(principal, event_id)
            kind, _ = logister.normalize_event(raw, ctx)
        except logister.Invalid as err:
            raise ApiError(422, {"errors": err.errors}, reason="invalid", headers=headers) from None
        await self._accept("ingest_events", raw, ctx, principal)
        body: dict[str, Any] = {"id": str(event_id), "legacy_id": legacy_id(event_id), "status": "accepted"}
        if kind.name == "span":
            body["type"] = "span"
        return JSONResponse(body, status_code=201, headers=headers)

    async def check_in(self, request: Request) -> Response:
        principal, decision = self.authenticate(request, "check_ins")
        headers = decision.headers()
        raw = await self._envelope(request, self.check_in_limits, logister.CHECK_IN_ENVELOPES, headers)
        try:
            event_id = logister.client_event_id(raw) or uuid.uuid4()
            ctx = self._context(principal, event_id)
            logister.normalize_check_in(raw, ctx)
        except logister.Invalid as err:
            raise ApiError(422, {"errors": err.errors}, reason="invalid", headers=headers) from None
        await self._accept("check_ins", raw, ctx, principal)
        return JSONResponse({"id": str(event_id), "status": "accepted"}, status_code=201, headers=headers)
