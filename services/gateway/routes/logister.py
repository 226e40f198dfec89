"""Logister HTTP API (SPEC 4.3; seeds logister-http-api*.txt; logister-python 0.6.0).

POST /api/v1/ingest_events        {"event": {...}}       → raw.logister
POST /api/v1/ingest_events/batch  NDJSON of envelopes    → raw.logister   (logister_batch.py, one record)
POST /api/v1/check_ins            {"check_in": {...}}    → raw.logister
POST /api/v1/deployments          {"deployment": {...}}  → raw.logister

Order of checks, as Logister does it: authenticate (401, or 429 once a source address
has failed too often), the per-token-and-endpoint limit (429), then the body (413, 415,
400), then the envelope content (422). Only a fully valid payload is enqueued.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from forgeline.bus.port import OutgoingRecord
from forgeline.bus.topics import RAW_LOGISTER
from forgeline.clock import Clock
from forgeline.config import Settings
from forgeline.ids import legacy_id, new_uuid4
from forgeline.schemas import logister, logister_fast, logister_raw
from forgeline.schemas.common import to_millis
from forgeline.schemas.records import RecordKind
from forgeline.tenancy.model import Principal, TenancyTable
from services.gateway.authlimit import AuthFailureLimit
from services.gateway.body import BodyLimits, parse_json, read_body, require_json_content_type
from services.gateway.errors import ApiError, JSONResponse
from services.gateway.first_received import FirstReceived
from services.gateway.publish import Publisher
from services.gateway.ratelimit import Decision, FixedWindowLimiter
from services.gateway.recent import RecentIds
from services.gateway.routes import logister_batch
from services.gateway.routes.logister_steps import seen_id
from services.gateway.tokens import Refresh, check_token, unauthorized

INGEST_EVENTS_PATH = "/api/v1/ingest_events"
CHECK_INS_PATH = "/api/v1/check_ins"
DEPLOYMENTS_PATH = "/api/v1/deployments"

# What a v1 record's "body" holds: the envelope's content, or its JSON as received (fast path).
RawBody = dict[str, Any] | orjson.Fragment
Normalize = Callable[[dict[str, Any], logister.IngestContext], tuple[RecordKind, dict[str, Any]]]


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
    auth_failures: AuthFailureLimit
    recent_ids: RecentIds = field(default_factory=RecentIds)
    first_received: FirstReceived = field(default_factory=FirstReceived)
    # Reads the control topic to its end, for a token the table does not know yet.
    refresh_tokens: Refresh | None = None

    def __post_init__(self) -> None:
        s = self.settings
        self.request_limiter = FixedWindowLimiter(
            s.logister_rate_limit_requests, s.logister_rate_limit_period_seconds, self.clock
        )
        self.event_limits = BodyLimits(s.max_body_bytes, s.max_inflated_bytes, s.max_json_depth)
        self.check_in_limits = BodyLimits(s.max_check_in_body_bytes, s.max_inflated_bytes, s.max_json_depth)
        self.batch_limits = BodyLimits(s.max_batch_body_bytes, s.max_batch_inflated_bytes, s.max_json_depth)

    def routes(self) -> list[Route]:
        return [
            Route(INGEST_EVENTS_PATH, self.ingest_event, methods=["POST"], name="logister_ingest_events"),
            Route(logister_batch.BATCH_PATH, self.ingest_batch, methods=["POST"], name="logister_ingest_batch"),
            Route(CHECK_INS_PATH, self.check_in, methods=["POST"], name="logister_check_ins"),
            Route(DEPLOYMENTS_PATH, self.deployment, methods=["POST"], name="logister_deployments"),
        ]

    # --- shared steps ------------------------------------------------------------------

    async def principal(self, request: Request) -> Principal:
        """Who sent the request; 401, or 429 once its source has failed too often (authlimit.py)."""
        checked = await check_token(self.tenancy, self.refresh_tokens, presented_token(request), ("logister",))
        principal = self.auth_failures.authenticate(request, lambda: checked, _rate_limited)
        if not isinstance(principal, Principal):
            raise unauthorized({"error": "Unauthorized"}, principal)
        return principal

    def limit(self, principal: Principal, endpoint: str, cost: int = 1) -> Decision:
        decision = self.request_limiter.hit(f"{principal.token_id}:{endpoint}", cost)
        if not decision.allowed:
            raise _rate_limited(decision)
        return decision

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock.time(), UTC)

    def received_at(self, seen: str, now: datetime) -> datetime:
        # A resent id keeps its first receive time: one row, whatever occurred_at defaults to.
        return self.first_received.get(seen) or now

    def ingest_context(
        self, principal: Principal, event_id: uuid.UUID, received_at: datetime | None = None
    ) -> logister.IngestContext:
        return logister.IngestContext(
            event_id=event_id,
            organisation_id=principal.organisation_id,
            project_id=principal.project_id,
            default_environment=principal.environment,
            received_at=received_at or self.received_at(seen_id(principal.project_id, event_id), self.now()),
        )

    async def publish_raw(
        self, route: str, items: Sequence[tuple[RawBody, logister.IngestContext]], principal: Principal
    ) -> None:
        """Enqueue the payloads as received, with who sent them and when; return once durable."""
        records = [
            OutgoingRecord(
                RAW_LOGISTER,
                orjson.dumps(
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
                ),
                key=ctx.event_id.bytes,
            )
            for raw, ctx in items
        ]
        await self.publisher.publish(records)
        for _, ctx in items:  # only once durable: a failed publish pins no time
            self.first_received.remember(seen_id(ctx.project_id, ctx.event_id), ctx.received_at)

    async def publish_batch(
        self, principal: Principal, items: Sequence[logister_raw.AcceptedItem], received: Sequence[tuple[str, datetime]]
    ) -> None:
        encoded = logister_raw.encode_batch(
            "ingest_events",
            principal.organisation_id,
            principal.project_id,
            principal.environment,
            principal.token_id,
            items,
            logister_raw.RECORD_BUDGET_BYTES,  # read at call time: tests lower it
        )
        await self.publisher.publish([OutgoingRecord(RAW_LOGISTER, value, key=key) for key, value in encoded])
        for seen, at in received:  # only once durable, as publish_raw
            self.first_received.remember(seen, at)

    async def _single(
        self,
        request: Request,
        route: str,
        limits: BodyLimits,
        envelopes: tuple[str, str],
        normalize: Normalize,
        event_id: Callable[[dict[str, Any], Principal], uuid.UUID],
        fast: bool = False,
    ) -> tuple[uuid.UUID, RecordKind, dict[str, str]]:
        """The whole single-envelope flow; returns the id, kind and rate-limit headers.

        ``fast``: an event the compiled fast path proves valid skips the full validator and is
        enqueued as received (forgeline.schemas.logister_fast); any other goes the full way."""
        principal = await self.principal(request)
        headers = self.limit(principal, route).headers()
        raw: RawBody
        try:
            require_json_content_type(request)
            body = await read_body(request, limits)
            quick = logister_fast.single_event(body, limits.max_depth) if fast else None
            if quick is not None:
                content, client_id, event_type = quick
                raw, kind = orjson.Fragment(content), logister.EVENT_TYPES[event_type]
                ctx = self.ingest_context(principal, client_id or new_uuid4())
            else:
                parsed = logister.extract_envelope(parse_json(body, limits), envelopes)
                ctx = self.ingest_context(principal, event_id(parsed, principal))
                kind, _ = normalize(parsed, ctx)
                raw = parsed
        except ApiError as err:
            err.headers.update(headers)
            raise
        except logister.MissingEnvelope as err:
            raise ApiError(400, {"error": str(err)}, reason="missing_envelope", headers=headers) from None
        except logister.Invalid as err:
            raise ApiError(422, {"errors": err.errors}, reason="invalid", headers=headers) from None
        try:
            await self.publish_raw(route, [(raw, ctx)], principal)
        except ApiError as err:
            err.headers.update(headers)
            raise
        return ctx.event_id, kind, headers

    # --- routes ------------------------------------------------------------------------

    async def ingest_event(self, request: Request) -> Response:
        event_id, kind, headers = await self._single(
            request,
            "ingest_events",
            self.event_limits,
            logister.EVENT_ENVELOPES,
            logister.normalize_event,
            _client_or_new_id,
            fast=True,
        )
        body: dict[str, Any] = {"id": str(event_id), "legacy_id": legacy_id(event_id), "status": "accepted"}
        if kind.name == "span":
            body["type"] = "span"
        return JSONResponse(body, status_code=201, headers=headers)

    async def ingest_batch(self, request: Request) -> Response:
        return await logister_batch.ingest_batch(self, request)

    async def check_in(self, request: Request) -> Response:
        event_id, _, headers = await self._single(
            request,
            "check_ins",
            self.check_in_limits,
            logister.CHECK_IN_ENVELOPES,
            logister.normalize_check_in,
            _client_or_new_id,
        )
        return JSONResponse({"id": str(event_id), "status": "accepted"}, status_code=201, headers=headers)

    async def deployment(self, request: Request) -> Response:
        event_id, _, headers = await self._single(
            request,
            "deployments",
            self.check_in_limits,
            logister.DEPLOYMENT_ENVELOPES,
            logister.normalize_deployment,
            lambda raw, principal: logister.deployment_event_id(raw, principal.project_id, principal.environment),
        )
        return JSONResponse({"id": str(event_id), "status": "accepted"}, status_code=201, headers=headers)


def _client_or_new_id(raw: dict[str, Any], principal: Principal) -> uuid.UUID:
    """The client's ``uuid`` (idempotent retries), else a new one. Invalid → 422."""
    return logister.client_event_id(raw) or new_uuid4()
