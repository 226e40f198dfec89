"""Reading request bodies within limits: wire size, inflated size, JSON nesting depth.

Every limit is enforced while streaming, so a huge or endless body, or a gzip bomb,
costs at most the configured cap in memory before it is refused.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.requests import ClientDisconnect, Request

from forgeline.schemas.common import json_depth_exceeds
from services.gateway.errors import ApiError


@dataclass(frozen=True, slots=True)
class BodyLimits:
    max_wire_bytes: int
    max_inflated_bytes: int
    max_depth: int


def _too_large(limit: int, what: str) -> ApiError:
    return ApiError(
        413,
        {
            "error": f"Payload Too Large: the {what} exceeds {limit} bytes",
            "code": "payload_too_large",
            "limit_bytes": limit,
        },
        reason="too_large",
    )


async def read_body(request: Request, limits: BodyLimits) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        if not (declared.isascii() and declared.isdigit()):  # "²".isdigit() is True
            raise ApiError(
                400, {"error": "Invalid Content-Length header", "code": "invalid_length"}, reason="bad_length"
            )
        if int(declared) > limits.max_wire_bytes:
            raise _too_large(limits.max_wire_bytes, "request body")
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limits.max_wire_bytes:
                raise _too_large(limits.max_wire_bytes, "request body")
            chunks.append(chunk)
    except ClientDisconnect:
        raise ApiError(
            400, {"error": "Client disconnected before the body was complete", "code": "disconnected"}, "disconnect"
        ) from None
    body = b"".join(chunks)
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding in ("gzip", "x-gzip"):
        return _inflate(body, zlib.MAX_WBITS | 16, limits.max_inflated_bytes, "gzip")
    if encoding == "deflate":
        # RFC 9110 "deflate" is zlib-wrapped, but many clients send raw deflate: accept both.
        wbits = zlib.MAX_WBITS if body[:1] and (body[0] & 0x0F) == 8 and int.from_bytes(body[:2]) % 31 == 0 else -15
        return _inflate(body, wbits, limits.max_inflated_bytes, "deflate")
    raise ApiError(
        415,
        {
            "error": f"Unsupported Content-Encoding {encoding!r}; use gzip, deflate or identity",
            "code": "unsupported_content_encoding",
        },
        reason="bad_encoding",
    )


def _inflate(data: bytes, wbits: int, cap: int, name: str) -> bytes:
    out: list[bytes] = []
    produced = 0
    try:
        while True:
            inflater = zlib.decompressobj(wbits)
            # max_length bounds what one call may produce: a bomb stops at cap + 1 bytes.
            piece = inflater.decompress(data, cap - produced + 1)
            produced += len(piece)
            if produced > cap:
                raise _too_large(cap, "decompressed request body")
            out.append(piece)
            if not inflater.eof:
                raise ApiError(
                    400,
                    {"error": f"Invalid {name} body: truncated stream", "code": f"invalid_{name}"},
                    reason="bad_encoding",
                )
            data = inflater.unused_data
            # gzip allows several members back to back; deflate does not.
            if not data or name != "gzip":
                break
    except zlib.error as err:
        raise ApiError(
            400, {"error": f"Invalid {name} body: {err}", "code": f"invalid_{name}"}, reason="bad_encoding"
        ) from None
    return b"".join(out)


def parse_json(body: bytes, limits: BodyLimits) -> Any:
    if not body.strip():
        return None
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as err:
        raise ApiError(400, {"error": f"Invalid JSON: {err}", "code": "invalid_json"}, reason="bad_json") from None
    if json_depth_exceeds(doc, limits.max_depth):
        raise ApiError(
            400,
            {"error": f"JSON nesting is deeper than {limits.max_depth} levels", "code": "too_deep"},
            reason="too_deep",
        )
    return doc


def require_json_content_type(request: Request) -> None:
    content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if content_type in ("", "application/json", "text/json", "text/plain") or content_type.endswith("+json"):
        return
    raise ApiError(
        415,
        {
            "error": f"Unsupported Content-Type {content_type!r}; send application/json",
            "code": "unsupported_content_type",
        },
        reason="bad_content_type",
    )
