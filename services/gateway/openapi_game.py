"""OpenAPI paths of the game families (Forge Logger, MessagePack), merged into openapi.py."""

from __future__ import annotations

from typing import Any

from forgeline import mediatype
from forgeline.schemas.forge import (
    ATTACHMENT_TYPES,
    BUILD_CHANNELS,
    EXPORT_PROVIDERS,
    FILENAME_PATTERN,
    MAX_BATCH_EVENTS,
    MAX_CONTENT_TYPE_CHARS,
    MAX_FILENAME_BYTES,
    REPORTER_TYPES,
    SEVERITIES,
)
from services.gateway.routes.msgpack import EVENT_PATHS

SECURITY_SCHEMES: dict[str, Any] = {
    "forgeToken": {"type": "http", "scheme": "bearer", "description": "Forge Logger token, flg_…"},
    "publicToken": {"type": "apiKey", "in": "header", "name": "x-public-token"},
}

_FORGE_SECURITY: list[dict[str, list[str]]] = [{"forgeToken": []}]


# The ``code`` of every 401 body, whatever the family.
_REFUSAL_CODES = (
    "missing_token, malformed_token, wrong_token_kind, invalid_token (unknown or revoked), project_archived."
)


def _json_error(description: str, example: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"example": example}}}


_VALIDATION = _json_error(
    "Validation error: every bad field, with its batch index.",
    {
        "error": "Validation failed",
        "code": "validation_error",
        "details": [{"index": 3, "field": "sessionId", "message": "must be a UUID"}],
    },
)
_FORGE_REFUSALS: dict[str, Any] = {
    "400": _VALIDATION,
    "401": _json_error(
        "Missing or invalid token (only flg_ tokens); code: " + _REFUSAL_CODES,
        {"error": "Missing or invalid token", "code": "wrong_token_kind"},
    ),
    "403": _json_error(
        "The body names another project/environment, or cites a sessionId, eventId or uploadId that is not "
        "one of the token's project.",
        {"code": "forbidden", "details": [{"field": "uploadIds[0]", "message": "is not an upload of this project"}]},
    ),
    "413": _json_error("Body over the limit.", {"code": "payload_too_large"}),
    "429": _json_error(
        "Rate limited (per token), or too many failed authentications from this address; see Retry-After.",
        {"code": "rate_limited", "retry_after": 12},
    ),
    "503": _json_error("The event bus did not acknowledge; retry after Retry-After.", {"retry_after": 1}),
}

_SESSION = {
    "type": "object",
    "required": ["build"],
    "properties": {
        "build": {
            "type": "object",
            "required": ["version", "platform"],
            "properties": {
                "version": {"type": "string"},
                "platform": {"type": "string"},
                "gitCommit": {"type": "string"},
                "channel": {"type": "string", "enum": list(BUILD_CHANNELS)},
            },
        },
        "player": {"type": "object", "properties": {"externalId": {"type": "string"}, "deviceId": {"type": "string"}}},
        "metadata": {"type": "object"},
    },
}
_EVENT = {
    "type": "object",
    "required": ["sessionId", "type"],
    "properties": {
        "sessionId": {"type": "string", "format": "uuid"},
        "type": {"type": "string"},
        "timestamp": {"type": "string", "format": "date-time"},
        "severity": {"type": "string", "enum": list(SEVERITIES)},
        "properties": {"type": "object"},
    },
}
_REPORT = {
    "type": "object",
    "required": ["sessionId", "title", "description", "severity", "reporterType"],
    "properties": {
        "sessionId": {"type": "string", "format": "uuid"},
        "title": {"type": "string"},
        "description": {"type": "string"},
        "severity": {"type": "string", "enum": list(SEVERITIES)},
        "reporterType": {"type": "string", "enum": list(REPORTER_TYPES)},
        "eventIds": {"type": "array", "items": {"type": "string", "format": "uuid"}},
        "uploadIds": {"type": "array", "items": {"type": "string", "format": "uuid"}},
        "clientRequestId": {"type": "string", "format": "uuid", "description": "Makes the report idempotent."},
        "export": {"type": "array", "items": {"type": "string", "enum": list(EXPORT_PROVIDERS)}},
        "metadata": {"type": "object"},
    },
}
_FILE = {
    "type": "object",
    "required": ["filename", "contentType", "size", "type"],
    "properties": {
        "filename": {
            "type": "string",
            "minLength": 1,
            "maxLength": MAX_FILENAME_BYTES,
            "pattern": FILENAME_PATTERN,
            "description": "A plain file name: no path, not dot-led, no control characters, "
            f"at most {MAX_FILENAME_BYTES} bytes in UTF-8.",
        },
        "contentType": {
            "type": "string",
            "maxLength": MAX_CONTENT_TYPE_CHARS,
            "pattern": mediatype.PATTERN,
            "description": "A media type (RFC 9110), e.g. image/png; the PUT must send it as its Content-Type.",
        },
        "size": {"type": "integer", "minimum": 1},
        "type": {"type": "string", "enum": list(ATTACHMENT_TYPES)},
    },
}


def _forge_post(summary: str, schema: dict[str, Any], example: dict[str, Any]) -> dict[str, Any]:
    return {
        "post": {
            "summary": summary,
            "security": _FORGE_SECURITY,
            "requestBody": {"required": True, "content": {"application/json": {"schema": schema}}},
            "responses": {
                "201": {"description": "Created", "content": {"application/json": {"example": example}}},
                **_FORGE_REFUSALS,
            },
        }
    }


def _msgpack_post(path: str) -> dict[str, Any]:
    return {
        "post": {
            "summary": f"MessagePack: one event or a list, all-or-nothing ({path})",
            "security": [{"publicToken": []}],
            "requestBody": {"required": True, "content": {"application/msgpack": {"schema": {}}}},
            "responses": {
                "200": {"description": "Queued", "content": {"application/json": {"example": {"status": "queued"}}}},
                "400": _json_error("Invalid or empty payload; every bad item listed.", {"error": "invalid_payload"}),
                "401": _json_error("Missing or invalid token.", {"error": "unauthorized", "code": "invalid_token"}),
                "403": _json_error("app_id of the token's application differs.", {"error": "forbidden"}),
                "413": _json_error("Body over the limit.", {"code": "payload_too_large"}),
                "415": _json_error("Explicit JSON (or other) content type.", {"error": "unsupported_media_type"}),
                "429": _json_error(
                    "10 requests/second per source IP, or too many failed authentications from it.",
                    {"error": "rate_limited", "retry_after": 1},
                ),
            },
        }
    }


def game_paths() -> dict[str, Any]:
    paths: dict[str, Any] = {
        "/v1/ingest/sessions": _forge_post(
            "Forge: start a game session", _SESSION, {"sessionId": "uuid", "buildId": "uuid", "startedAt": "…Z"}
        ),
        "/v1/ingest/events": _forge_post(
            f"Forge: one event or an array of at most {MAX_BATCH_EVENTS}",
            {"oneOf": [_EVENT, {"type": "array", "items": _EVENT, "maxItems": MAX_BATCH_EVENTS}]},
            {"accepted": 1, "eventIds": ["uuid"]},
        ),
        "/v1/ingest/reports": _forge_post(
            "Forge: a bug report (idempotent with clientRequestId)",
            _REPORT,
            {"reportId": "uuid", "sessionId": "uuid", "status": "received", "export": []},
        ),
        "/v1/ingest/uploads": _forge_post(
            "Forge: signed PUT URLs for attachments",
            {
                "oneOf": [
                    _FILE,
                    {
                        "type": "object",
                        "properties": {"sessionId": {"type": "string"}, "files": {"type": "array", "items": _FILE}},
                    },
                ]
            },
            {
                "uploads": [
                    {
                        "uploadId": "uuid",
                        "url": "…",
                        "method": "PUT",
                        "headers": {},
                        "expiresAt": "…Z",
                        "completeUrl": "… (S3 store only: POST it after the PUT)",
                    }
                ]
            },
        ),
        "/v1/blobs/{upload_id}": {
            "put": {
                "summary": "The signed upload URL of the local blob store (the signature is the authorization)",
                "parameters": [
                    {"name": "upload_id", "in": "path", "required": True, "schema": {"type": "string"}},
                    {"name": "token", "in": "query", "required": True, "schema": {"type": "string"}},
                ],
                "requestBody": {
                    "required": True,
                    "description": "The file's bytes, sent with the Content-Type header the upload was created with.",
                    "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
                },
                "responses": {
                    "201": _json_error("Stored.", {"uploadId": "uuid", "size": 1, "sha256": "…"}),
                    "400": _json_error(
                        "Content-Type differs from the one signed, or the upload cannot be stored.",
                        {"code": "wrong_content_type | invalid_filename"},
                    ),
                    "403": _json_error("Tampered or expired URL.", {"code": "forbidden"}),
                    "413": _json_error("More bytes than declared.", {"code": "payload_too_large"}),
                },
            }
        },
        "/v1/blobs/{upload_id}/complete": {
            "post": {
                "summary": "S3 blob store: after the PUT to object storage, record the upload (completeUrl)",
                "parameters": [
                    {"name": "upload_id", "in": "path", "required": True, "schema": {"type": "string"}},
                    {"name": "token", "in": "query", "required": True, "schema": {"type": "string"}},
                ],
                "responses": {
                    "201": _json_error("Checked and recorded.", {"uploadId": "uuid", "size": 1, "sha256": "…"}),
                    "400": _json_error(
                        "Nothing uploaded yet, or another Content-Type (the object is deleted).",
                        {"code": "upload_missing | wrong_content_type"},
                    ),
                    "403": _json_error("Tampered or expired completion URL.", {"code": "forbidden"}),
                    "413": _json_error("Larger than the grant allows (deleted).", {"code": "payload_too_large"}),
                },
            }
        },
        "/v1/blob-downloads": {
            "get": {
                "summary": "Local blob store: a signed download URL the console hands out (always an attachment)",
                "parameters": [{"name": "token", "in": "query", "required": True, "schema": {"type": "string"}}],
                "responses": {
                    "200": {
                        "description": "The file, as Content-Disposition: attachment.",
                        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
                    },
                    "403": _json_error("Tampered or expired URL.", {"code": "forbidden"}),
                    "404": _json_error("Not in the store (or the store is S3).", {"code": "not_found"}),
                },
            }
        },
        "/api/models": {
            "post": {
                "summary": "MessagePack: upload a level model (secret key: x-api-key or Bearer)",
                "requestBody": {
                    "required": True,
                    "content": {
                        "multipart/form-data": {
                            "schema": {
                                "type": "object",
                                "required": ["app_name", "level_name", "model_file"],
                                "properties": {
                                    "app_name": {"type": "string"},
                                    "level_name": {"type": "string"},
                                    "model_file": {"type": "string", "format": "binary"},
                                },
                            }
                        }
                    },
                },
                "responses": {
                    "200": _json_error("Stored; metadata queued.", {"status": "queued", "model_id": "uuid"}),
                    "400": _json_error("A field or the file is missing.", {"error": "invalid_payload"}),
                    "401": _json_error("Missing or invalid key.", {"error": "unauthorized", "code": "invalid_token"}),
                    "403": _json_error("A public token, or another application's name.", {"error": "forbidden"}),
                    "413": _json_error("Over FORGELINE_MAX_MODEL_BYTES.", {"error": "payload_too_large"}),
                    "429": _json_error(
                        "Rate limited (per source IP), or too many failed authentications from it.",
                        {"error": "rate_limited", "retry_after": 1},
                    ),
                },
            }
        },
        "/api/export": {
            "post": {
                "summary": "MessagePack: ask the NDJSON exporter to flush what it buffers (coalesced)",
                "description": "No token unless FORGELINE_EXPORT_REQUIRES_SECRET_KEY=true (then the secret key, "
                "x-api-key or Bearer). Appends one control.exporter record; requests within "
                "FORGELINE_EXPORT_REQUEST_INTERVAL_SECONDS of the last one are coalesced into it.",
                "responses": {
                    "200": {
                        "description": "Flush requested (or folded into one requested just before)",
                        "content": {"application/json": {"example": {"status": "queued", "coalesced": False}}},
                    },
                    "401": _json_error(
                        "Secret key required and missing or invalid.",
                        {"error": "unauthorized", "code": "invalid_token"},
                    ),
                    "403": _json_error("Secret key required; a public token was sent.", {"error": "forbidden"}),
                    "429": _json_error("Rate limited (per source IP).", {"error": "rate_limited", "retry_after": 1}),
                    "503": _json_error("The event bus did not acknowledge; retry.", {"retry_after": 1}),
                },
            }
        },
        "/api/sql/select": {
            "post": {
                "summary": "Disabled by design",
                "responses": {
                    "401": _json_error("Missing or invalid key.", {"error": "unauthorized", "code": "invalid_token"}),
                    "429": _json_error(
                        "Rate limited (per source IP), or too many failed authentications from it.",
                        {"error": "rate_limited", "retry_after": 1},
                    ),
                    "501": _json_error("Always, after auth.", {"error": "sql_unavailable"}),
                },
            }
        },
    }
    for path in EVENT_PATHS:
        paths[path] = _msgpack_post(path)
    return paths
