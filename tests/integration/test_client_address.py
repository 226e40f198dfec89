"""Who the client is, through the real HTTP server: X-Forwarded-For counts only from trusted proxies.

uvicorn by default replaces the peer address with X-Forwarded-For whenever the peer is
127.0.0.1, trusted proxies or not: every spoofed address then got a fresh per-address
budget (auth failures, the MessagePack 10 requests/s). These tests run the gateway's own
server configuration on a loopback port and spoof from 127.0.0.1.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import msgpack
import pytest

from tests.fixtures.gateway_server import LiveGateway, serve_gateway

pytestmark = pytest.mark.integration

# Long fixed windows: the counts below all fall into one (see _inside_one_window).
WINDOW_S = 3600
LIMITS = {
    "msgpack_rate_limit_requests": 10,
    "msgpack_rate_limit_period_seconds": WINDOW_S,
    "auth_failure_rate_limit_requests": 6,
    "auth_failure_period_seconds": WINDOW_S,
}


@pytest.fixture
def untrusted(tmp_path: Path) -> Iterator[LiveGateway]:
    with serve_gateway(tmp_path / "gw", **LIMITS) as gw:
        yield gw


@pytest.fixture
def behind_local_proxy(tmp_path: Path) -> Iterator[LiveGateway]:
    with serve_gateway(tmp_path / "gw", trusted_proxies=("127.0.0.1",), **LIMITS) as gw:
        yield gw


def _inside_one_window() -> None:
    """Fixed windows start on multiples of WINDOW_S: never start a count in its last seconds."""
    left = WINDOW_S - time.time() % WINDOW_S
    if left < 10:
        time.sleep(left + 0.1)


def _msgpack(client: httpx.Client, gw: LiveGateway, forwarded: str | None) -> int:
    event = {
        "event_name": "Create_Player",
        "app_id": gw.tokens["msgpack_app_id"],
        "build_id": "Win64_Shipping_1.0.2",
        "player_id": "player_uuid",
        "timestamp": "2026-02-12T10:00:00Z",
    }
    headers = {"x-public-token": gw.tokens["msgpack_public_token"], "Content-Type": "application/msgpack"}
    if forwarded is not None:
        headers["X-Forwarded-For"] = forwarded
    return client.post("/api/events", content=msgpack.packb(event), headers=headers).status_code


def _bad_token(client: httpx.Client, forwarded: str, family: str) -> int:
    auth = {"Authorization": "Bearer flg_guess" if family == "forge" else "Bearer lgst_guess"}
    path, body = (
        ("/v1/ingest/sessions", {"build": {"version": "1", "platform": "windows"}})
        if family == "forge"
        else ("/api/v1/ingest_events", {"event": {"event_type": "log", "message": "x"}})
    )
    response = client.post(path, json=body, headers={**auth, "X-Forwarded-For": forwarded})
    return response.status_code


def _client(gw: LiveGateway) -> httpx.Client:
    return httpx.Client(base_url=gw.url, timeout=10)


def test_spoofed_forwarded_for_does_not_escape_the_msgpack_per_address_limit(untrusted: LiveGateway) -> None:
    _inside_one_window()
    with _client(untrusted) as client:
        statuses = [_msgpack(client, untrusted, f"203.0.113.{n}") for n in range(16)]
    assert statuses == [200] * 10 + [429] * 6


@pytest.mark.parametrize("family", ["logister", "forge"])
def test_spoofed_forwarded_for_does_not_escape_the_auth_failure_limit(untrusted: LiveGateway, family: str) -> None:
    _inside_one_window()
    with _client(untrusted) as client:
        statuses = [_bad_token(client, f"198.51.100.{n}", family) for n in range(8)]
    assert statuses == [401] * 6 + [429] * 2


def test_a_trusted_proxy_s_forwarded_for_is_the_client(behind_local_proxy: LiveGateway) -> None:
    gw = behind_local_proxy
    _inside_one_window()
    with _client(gw) as client:
        # Each forwarded address is its own client with its own budget...
        assert [_msgpack(client, gw, f"203.0.113.{n}") for n in range(16)] == [200] * 16
        assert [_bad_token(client, f"198.51.100.{n}", "forge") for n in range(8)] == [401] * 8
        # ...and one forwarded address is limited like any client.
        assert [_msgpack(client, gw, "192.0.2.7") for _ in range(11)] == [200] * 10 + [429]
        assert [_bad_token(client, "192.0.2.8", "logister") for _ in range(7)] == [401] * 6 + [429]
        # The rightmost address our proxies did not add is the client: 192.0.2.7 again.
        assert _msgpack(client, gw, "10.9.9.9, 192.0.2.7, 127.0.0.1") == 429
        # Without the header the proxy itself is the client.
        assert _msgpack(client, gw, None) == 200
