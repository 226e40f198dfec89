"""forgeline.clientip: the client behind trusted proxies, the rule the gateway and the console share."""

from __future__ import annotations

import pytest
from starlette.requests import Request

from forgeline.clientip import ClientAddress

pytestmark = pytest.mark.unit


def request(peer: str, forwarded: str | None = None) -> Request:
    headers = [] if forwarded is None else [(b"x-forwarded-for", forwarded.encode())]
    return Request({"type": "http", "method": "GET", "path": "/", "headers": headers, "client": (peer, 1)})


def test_the_header_counts_only_from_a_trusted_peer() -> None:
    rule = ClientAddress(("10.0.0.0/8", "2001:db8::/32"))
    assert rule.of(request("192.0.2.1", "198.51.100.7")) == "192.0.2.1"  # not a proxy: its own address
    assert rule.of(request("10.0.0.5", "198.51.100.7")) == "198.51.100.7"
    assert rule.of(request("2001:db8::1", "198.51.100.7")) == "198.51.100.7"
    # From the right: the first hop our proxies did not add; what the client wrote before it is ignored.
    assert rule.of(request("10.0.0.5", "1.2.3.4, 198.51.100.7, 10.0.0.9")) == "198.51.100.7"
    assert rule.of(request("10.0.0.5", "10.0.0.7, 10.0.0.9")) == "10.0.0.5"  # all proxies: the peer
    assert rule.of(request("10.0.0.5")) == "10.0.0.5"
    assert rule.of(request("10.0.0.5", " , ")) == "10.0.0.5"


def test_without_trusted_proxies_the_peer_is_the_client() -> None:
    assert ClientAddress(()).of(request("127.0.0.1", "198.51.100.7")) == "127.0.0.1"
