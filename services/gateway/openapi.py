"""The OpenAPI 3.1 document of every gateway route, served at /openapi.json."""

from __future__ import annotations

from typing import Any

from forgeline.schemas.logister import CHECK_IN_STATUSES, EVENT_TYPES, SPAN_KINDS
from services.gateway import openapi_game


def _error(description: str, example: dict[str, Any]) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"type": "object"}, "example": example}},
    }


_RATE_LIMIT_HEADERS = {
    name: {"schema": {"type": "integer"}}
    for name in ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset")
}

_COMMON_REFUSALS: dict[str, Any] = {
    "400": _error(
        "Envelope missing, invalid JSON, bad encoding or nesting too deep.",
        {"error": "param is missing or the value is empty: event"},
    ),
    "401": _error(
        "Token missing, unknown, revoked, or of an archived project; "
        "code: missing_token, malformed_token, wrong_token_kind, invalid_token (unknown or revoked) "
        "or project_archived.",
        {"error": "Unauthorized", "code": "invalid_token"},
    ),
    "413": _error("Body (or its decompressed form) over the route's limit.", {"error": "Payload Too Large"}),
    "415": _error("Content-Type or Content-Encoding not supported.", {"error": "Unsupported Content-Type"}),
    "422": _error("Envelope present but its content failed validation.", {"errors": ["Message can't be blank"]}),
    "429": {
        **_error(
            "Rate limit exceeded (per token and endpoint, or authentication failures per source IP).",
            {"error": "Rate limit exceeded", "limit": 1200, "window_seconds": 60, "retry_after": 60},
        ),
        "headers": {**_RATE_LIMIT_HEADERS, "Retry-After": {"schema": {"type": "integer"}}},
    },
    "503": _error(
        "The event bus did not acknowledge in time; retry after Retry-After.",
        {"error": "Service Unavailable"},
    ),
}

_EVENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["event_type"],
    "properties": {
        "uuid": {"type": "string", "format": "uuid", "description": "Client id; makes retries idempotent."},
        "event_type": {"type": "string", "enum": list(EVENT_TYPES)},
        "message": {"type": "string", "description": "Required except for spans."},
        "level": {"type": "string", "examples": ["info", "warn", "error", "fatal"]},
        "fingerprint": {"type": "string"},
        "occurred_at": {"type": "string", "format": "date-time"},
        "context": {"type": "object"},
        "name": {"type": "string", "description": "Span label."},
        "kind": {"type": "string", "enum": list(SPAN_KINDS)},
        "trace_id": {"type": "string"},
        "span_id": {"type": "string"},
        "parent_span_id": {"type": "string"},
        "duration_ms": {"type": "number", "minimum": 0},
        "started_at": {"type": "string", "format": "date-time"},
    },
}

_CHECK_IN_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["slug"],
    "properties": {
        "slug": {"type": "string"},
        "status": {"type": "string", "enum": list(CHECK_IN_STATUSES), "default": "ok"},
        "expected_interval_seconds": {"type": "integer", "minimum": 1, "default": 300},
        "environment": {"type": "string"},
        "release": {"type": "string"},
        "duration_ms": {"type": "number"},
        "trace_id": {"type": "string"},
        "request_id": {"type": "string"},
        "occurred_at": {"type": "string", "format": "date-time"},
    },
}


def _ops(summary: str) -> dict[str, Any]:
    return {"get": {"summary": summary, "responses": {"200": {"description": "OK"}}}}


def openapi_document() -> dict[str, Any]:
    security: list[dict[str, list[str]]] = [{"bearer": []}, {"apiKey": []}]
    return {
        "openapi": "3.1.0",
        "info": {"title": "Forgeline gateway", "version": "0.1.0"},
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-Api-Key"},
                **openapi_game.SECURITY_SCHEMES,
            }
        },
        "paths": {
            "/api/v1/ingest_events": {
                "post": {
                    "summary": "Logister: ingest one error, log, metric, transaction, span or check-in event",
                    "security": security,
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "properties": {"event": _EVENT_SCHEMA, "EVENT": _EVENT_SCHEMA},
                                }
                            }
                        },
                    },
                    "responses": {
                        "201": {
                            "description": "Accepted (spans add type: span).",
                            "headers": _RATE_LIMIT_HEADERS,
                            "content": {
                                "application/json": {
                                    "example": {"id": "event-uuid", "legacy_id": 123, "status": "accepted"}
                                }
                            },
                        },
                        **_COMMON_REFUSALS,
                    },
                }
            },
            "/api/v1/check_ins": {
                "post": {
                    "summary": "Logister: a monitor heartbeat for scheduled work",
                    "security": security,
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "properties": {
                                        "check_in": _CHECK_IN_SCHEMA,
                                        "CHECK_IN": _CHECK_IN_SCHEMA,
                                    },
                                }
                            }
                        },
                    },
                    "responses": {
                        "201": {
                            "description": "Accepted.",
                            "headers": _RATE_LIMIT_HEADERS,
                            "content": {"application/json": {"example": {"id": "uuid", "status": "accepted"}}},
                        },
                        **_COMMON_REFUSALS,
                    },
                }
            },
            "/api/v1/ingest_events/batch": {
                "post": {
                    "summary": "Logister: up to FORGELINE_MAX_BATCH_LINES envelopes as NDJSON (gzip optional), atomic",
                    "security": security,
                    "parameters": [
                        {"name": "X-Logister-Batch-Id", "in": "header", "required": False, "schema": {"type": "string"}}
                    ],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/x-ndjson": {
                                "schema": {
                                    "type": "string",
                                    "description": 'One {"event": {...}} per line, each with a uuid',
                                }
                            }
                        },
                    },
                    "responses": {
                        "202": {
                            "description": "Every envelope accepted; per-line results in line order.",
                            "headers": _RATE_LIMIT_HEADERS,
                            "content": {
                                "application/json": {
                                    "example": {
                                        "schema_version": 1,
                                        "batch_id": "sha256-of-body",
                                        "status": "accepted",
                                        "accepted": 1,
                                        "duplicates": 0,
                                        "results": [
                                            {"line": 1, "id": "uuid", "status": "accepted", "duplicate": False}
                                        ],
                                    }
                                }
                            },
                        },
                        **_COMMON_REFUSALS,
                        "400": _error(
                            "missing_identity, invalid_identity, invalid_envelope, invalid_gzip, empty_batch.",
                            {"code": "missing_identity", "error": "line 2 has no uuid or event_id", "line": 2},
                        ),
                        "422": _error(
                            "Some envelope failed validation; nothing was stored.",
                            {"status": "rejected", "results": [{"line": 1, "status": "rejected", "errors": ["..."]}]},
                        ),
                    },
                }
            },
            "/api/v1/deployments": {
                "post": {
                    "summary": "Logister: record a deployment (release, environment, repository, commit_sha, branch…)",
                    "security": security,
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": {"type": "object", "required": ["deployment"]}}},
                    },
                    "responses": {
                        "201": {
                            "description": "Accepted; the same deployment recorded twice has the same id.",
                            "content": {"application/json": {"example": {"id": "uuid", "status": "accepted"}}},
                        },
                        **_COMMON_REFUSALS,
                    },
                }
            },
            "/health": _ops("Liveness"),
            "/ready": _ops("Readiness: tokens loaded and the bus takes writes (503 otherwise)"),
            "/metrics": _ops("Prometheus metrics"),
            "/openapi.json": _ops("This document"),
            **openapi_game.game_paths(),
        },
    }
