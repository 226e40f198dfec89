"""services.gateway.body: wire size, inflated size and nesting limits, enforced while streaming."""

from __future__ import annotations

import asyncio
import gzip
import os
import zlib
from collections.abc import Iterable
from typing import Any

import orjson
import pytest
from starlette.requests import Request

from services.gateway.body import BodyLimits, parse_json, read_body, require_json_content_type
from services.gateway.errors import ApiError

pytestmark = pytest.mark.unit

LIMITS = BodyLimits(max_wire_bytes=1024, max_inflated_bytes=4096, max_depth=4)


class FakeBody:
    """An ASGI receive callable serving ``chunks``, counting how many were asked for."""

    def __init__(self, chunks: Iterable[bytes], disconnect: bool = False) -> None:
        self._chunks = iter(chunks)
        self._disconnect = disconnect
        self.calls = 0
        self._pending = next(self._chunks, None)

    async def __call__(self) -> dict[str, Any]:
        self.calls += 1
        current = self._pending
        if current is None:
            if self._disconnect:
                return {"type": "http.disconnect"}
            return {"type": "http.request", "body": b"", "more_body": False}
        self._pending = next(self._chunks, None)
        more = self._pending is not None or self._disconnect
        return {"type": "http.request", "body": current, "more_body": more}


def request(receive: FakeBody, headers: dict[str, str] | None = None) -> Request:
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/api/v1/ingest_events",
        "query_string": b"",
        "headers": [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()],
    }
    return Request(scope, receive)


def read(chunks: Iterable[bytes], headers: dict[str, str] | None = None, limits: BodyLimits = LIMITS) -> bytes:
    return asyncio.run(read_body(request(FakeBody(chunks), headers), limits))


def refused(chunks: Iterable[bytes], headers: dict[str, str] | None = None, limits: BodyLimits = LIMITS) -> ApiError:
    with pytest.raises(ApiError) as info:
        read(chunks, headers, limits)
    return info.value


# --- wire size -------------------------------------------------------------------------------------


def test_identity_body_is_returned_as_sent() -> None:
    assert read([b'{"a":', b"1}"]) == b'{"a":1}'
    assert read([b"x"], {"Content-Encoding": "identity"}) == b"x"
    assert read([b"x"], {"Content-Encoding": ""}) == b"x"
    assert read([]) == b""


def test_body_at_the_limit_is_accepted() -> None:
    assert len(read([b"x" * 1024], {"Content-Length": "1024"})) == 1024


def test_declared_length_over_the_limit_is_refused_before_reading() -> None:
    receive = FakeBody([b"x"])
    with pytest.raises(ApiError) as info:
        asyncio.run(read_body(request(receive, {"Content-Length": "1025"}), LIMITS))
    assert info.value.status == 413
    assert info.value.body["code"] == "payload_too_large"
    assert info.value.body["limit_bytes"] == 1024
    assert receive.calls == 0


def test_streamed_body_over_the_limit_is_refused_while_streaming() -> None:
    def endless() -> Iterable[bytes]:
        while True:
            yield b"x" * 100

    receive = FakeBody(endless())
    with pytest.raises(ApiError) as info:
        asyncio.run(read_body(request(receive), LIMITS))
    assert info.value.status == 413
    assert receive.calls <= 12  # stopped right after passing 1024 bytes


def test_a_body_longer_than_its_declared_length_is_still_capped() -> None:
    error = refused([b"x" * 600, b"x" * 600], {"Content-Length": "10"})
    assert error.status == 413


@pytest.mark.parametrize("value", ["abc", "-1", "1.5", " ", "0x10"])
def test_invalid_content_length_is_400(value: str) -> None:
    error = refused([b"{}"], {"Content-Length": value})
    assert (error.status, error.body["code"]) == (400, "invalid_length")


def test_client_disconnect_is_400() -> None:
    with pytest.raises(ApiError) as info:
        asyncio.run(read_body(request(FakeBody([b'{"a":'], disconnect=True)), LIMITS))
    assert (info.value.status, info.value.body["code"]) == (400, "disconnected")


# --- content encodings ------------------------------------------------------------------------------

DOC = orjson.dumps({"event": {"event_type": "log", "message": "hello " * 50}})


def _raw_deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(wbits=-15)
    return compressor.compress(data) + compressor.flush()


@pytest.mark.parametrize(
    ("encoding", "encoded"),
    [
        ("gzip", gzip.compress(DOC)),
        ("x-gzip", gzip.compress(DOC)),
        (" GZip ", gzip.compress(DOC)),
        ("deflate", zlib.compress(DOC)),
        ("deflate", _raw_deflate(DOC)),
        ("DEFLATE", zlib.compress(DOC, 1)),
    ],
    ids=["gzip", "x-gzip", "mixed-case-padded", "deflate-zlib", "deflate-raw", "deflate-upper"],
)
def test_compressed_bodies_are_inflated(encoding: str, encoded: bytes) -> None:
    assert read([encoded], {"Content-Encoding": encoding}) == DOC


def test_compressed_body_in_many_chunks() -> None:
    encoded = gzip.compress(DOC)
    chunks = [encoded[i : i + 7] for i in range(0, len(encoded), 7)]
    assert read(chunks, {"Content-Encoding": "gzip"}) == DOC


def test_gzip_members_are_concatenated() -> None:
    assert read([gzip.compress(b"abc") + gzip.compress(b"def")], {"Content-Encoding": "gzip"}) == b"abcdef"


def test_inflated_size_at_the_cap_is_accepted_and_one_more_byte_is_413() -> None:
    assert len(read([gzip.compress(b"x" * 4096)], {"Content-Encoding": "gzip"})) == 4096
    error = refused([gzip.compress(b"x" * 4097)], {"Content-Encoding": "gzip"})
    assert error.status == 413
    assert error.body["limit_bytes"] == 4096
    assert "decompressed" in error.body["error"]


def test_the_inflated_cap_counts_every_gzip_member() -> None:
    body = gzip.compress(b"x" * 3000) + gzip.compress(b"y" * 3000)
    assert refused([body], {"Content-Encoding": "gzip"}).status == 413


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_a_bomb_is_413(encoding: str) -> None:
    zeros = b"\0" * (20 * 1024 * 1024)
    bomb = gzip.compress(zeros, 9) if encoding == "gzip" else zlib.compress(zeros, 9)
    limits = BodyLimits(max_wire_bytes=1024 * 1024, max_inflated_bytes=64 * 1024, max_depth=4)
    error = refused([bomb], {"Content-Encoding": encoding}, limits)
    assert error.status == 413
    assert error.body["limit_bytes"] == 64 * 1024


@pytest.mark.parametrize(
    ("encoding", "body"),
    [
        ("gzip", b"not gzip at all"),
        ("gzip", gzip.compress(DOC)[:-8]),
        ("gzip", gzip.compress(DOC) + b"trailing garbage"),
        ("gzip", b""),
        ("x-gzip", b"\x1f\x8b"),
        ("deflate", b"\xff\xff\xff"),
        ("deflate", zlib.compress(DOC)[:-4]),
        ("deflate", _raw_deflate(DOC)[:-2]),
    ],
    ids=[
        "gzip-garbage",
        "gzip-truncated",
        "gzip-trailing",
        "gzip-empty",
        "gzip-magic-only",
        "deflate-garbage",
        "deflate-zlib-truncated",
        "deflate-raw-truncated",
    ],
)
def test_broken_compressed_bodies_are_400(encoding: str, body: bytes) -> None:
    error = refused([body], {"Content-Encoding": encoding})
    assert error.status == 400
    name = "gzip" if "gzip" in encoding else "deflate"
    assert error.body["code"] == f"invalid_{name}"
    assert error.body["error"].startswith(f"Invalid {name} body")


@pytest.mark.parametrize("encoding", ["br", "zstd", "compress", "gzip, deflate", "identity;q=1"])
def test_unknown_encodings_are_415(encoding: str) -> None:
    error = refused([b"{}"], {"Content-Encoding": encoding})
    assert (error.status, error.body["code"]) == (415, "unsupported_content_encoding")


def test_wire_limit_applies_to_the_compressed_size() -> None:
    incompressible = gzip.compress(os.urandom(2048))
    assert refused([incompressible], {"Content-Encoding": "gzip"}).status == 413


# --- parse_json ------------------------------------------------------------------------------------


def test_parse_json_returns_the_document() -> None:
    assert parse_json(b'{"event": {"a": [1, 2]}}', LIMITS) == {"event": {"a": [1, 2]}}


@pytest.mark.parametrize("body", [b"", b"   ", b"\n\t\r "])
def test_parse_json_of_an_empty_body_is_none(body: bytes) -> None:
    assert parse_json(body, LIMITS) is None


@pytest.mark.parametrize("body", [b"{", b"{'a': 1}", b"NaN", b"[1,]", b"\xff", b'"\\ud800"', b"1e400"])
def test_parse_json_of_invalid_json_is_400(body: bytes) -> None:
    with pytest.raises(ApiError) as info:
        parse_json(body, LIMITS)
    assert (info.value.status, info.value.body["code"]) == (400, "invalid_json")
    assert info.value.body["error"].startswith("Invalid JSON")


def test_parse_json_enforces_the_depth_limit() -> None:
    assert parse_json(b'{"a": {"b": {"c": [1]}}}', LIMITS) is not None  # depth 4
    with pytest.raises(ApiError) as info:
        parse_json(b'{"a": {"b": {"c": [[1]]}}}', LIMITS)  # depth 5
    assert (info.value.status, info.value.body["code"]) == (400, "too_deep")
    assert info.value.body["error"] == "JSON nesting is deeper than 4 levels"


def test_parse_json_far_beyond_the_parsers_own_limit_is_400() -> None:
    with pytest.raises(ApiError) as info:
        parse_json(b"[" * 100_000 + b"]" * 100_000, LIMITS)
    assert info.value.status == 400


# --- require_json_content_type ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "",
        "application/json",
        "application/json; charset=utf-8",
        "APPLICATION/JSON",
        "text/json",
        "text/plain",
        "application/vnd.api+json",
        "application/problem+json ; x=y",
    ],
)
def test_json_compatible_content_types_pass(content_type: str | None) -> None:
    headers = {} if content_type is None else {"Content-Type": content_type}
    require_json_content_type(request(FakeBody([]), headers))


@pytest.mark.parametrize(
    "content_type",
    [
        "application/x-www-form-urlencoded",
        "application/msgpack",
        "application/x-msgpack",
        "multipart/form-data",
        "application/octet-stream",
        "text/html",
        "application/x-ndjson",
        "application/jsonp",
    ],
)
def test_other_content_types_are_415(content_type: str) -> None:
    with pytest.raises(ApiError) as info:
        require_json_content_type(request(FakeBody([]), {"Content-Type": content_type}))
    assert (info.value.status, info.value.body["code"]) == (415, "unsupported_content_type")
