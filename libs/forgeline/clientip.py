"""The source address of a request; X-Forwarded-For only when the peer is a trusted proxy.

One rule for every service that limits per client (the gateway's limits, the console's
sign-in throttle): FORGELINE_TRUSTED_PROXIES names the proxies whose header is believed.
"""

from __future__ import annotations

import ipaddress

from starlette.requests import Request


class ClientAddress:
    def __init__(self, trusted_proxies: tuple[str, ...]) -> None:
        self._trusted = [ipaddress.ip_network(p, strict=False) for p in trusted_proxies]

    def _is_trusted(self, host: str) -> bool:
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(address in network for network in self._trusted)

    def of(self, request: Request) -> str:
        peer = request.client.host if request.client else "unknown"
        if not self._trusted or not self._is_trusted(peer):
            return peer
        forwarded = request.headers.get("x-forwarded-for", "")
        # Walk from the right: the last address not added by one of our proxies is the client.
        for hop in reversed([h.strip() for h in forwarded.split(",") if h.strip()]):
            if not self._is_trusted(hop):
                return hop
        return peer
