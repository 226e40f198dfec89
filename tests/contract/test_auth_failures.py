"""Token guessing is limited on every family, from one budget per source address.

Logister, Forge Logger and every MessagePack route that takes a key (public token on the
ingest routes; secret key on models, sql and, when required, export) count their failures
against the same 120-a-minute budget; over it each family answers 429 with Retry-After in
its own error format.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import msgpack
import pytest

from tests.conftest import GatewayHarness

pytestmark = pytest.mark.contract

MakeGateway = Callable[..., GatewayHarness]
Send = Callable[[GatewayHarness, str], httpx.Response]

SESSION = {"build": {"version": "1.0.0", "platform": "windows"}}


def logister(gw: GatewayHarness, token: str) -> httpx.Response:
    event = {"event": {"event_type": "log", "level": "info", "message": "hello"}}
    return gw.client.post("/api/v1/ingest_events", json=event, headers={"Authorization": f"Bearer {token}"})


def forge_bearer(gw: GatewayHarness, token: str) -> httpx.Response:
    return gw.client.post("/v1/ingest/sessions", json=SESSION, headers={"Authorization": f"Bearer {token}"})


def msgpack_public(gw: GatewayHarness, token: str) -> httpx.Response:
    event = {"event_name": "Create_Player", "app_id": gw.tokens["msgpack_app_id"], "player_id": "p1"}
    body = msgpack.packb(event, use_bin_type=True)
    return gw.client.post(
        "/api/events", content=body, headers={"x-public-token": token, "Content-Type": "application/msgpack"}
    )


def msgpack_legacy_key(gw: GatewayHarness, token: str) -> httpx.Response:
    body = msgpack.packb({"event_name": "Create_Player", "app_id": gw.tokens["msgpack_app_id"], "player_id": "p1"})
    return gw.client.post(
        "/api/player", content=body, headers={"x-api-key": token, "Content-Type": "application/msgpack"}
    )


def msgpack_models(gw: GatewayHarness, token: str) -> httpx.Response:
    form = {"app_name": "default-game", "level_name": "Level_1"}
    files = {"model_file": ("level1.glb", b"glb", "model/gltf-binary")}
    return gw.client.post("/api/models", data=form, files=files, headers={"x-api-key": token})


def msgpack_sql_bearer(gw: GatewayHarness, token: str) -> httpx.Response:
    return gw.client.post("/api/sql/select", json={"sql": "SELECT 1"}, headers={"Authorization": f"Bearer {token}"})


def msgpack_export(gw: GatewayHarness, token: str) -> httpx.Response:
    return gw.client.post("/api/export", headers={"x-api-key": token})


def _logister_429(body: dict[str, Any], retry_after: int, limit: int) -> None:
    assert body == {"error": "Rate limit exceeded", "limit": limit, "window_seconds": 60, "retry_after": retry_after}


def _forge_429(body: dict[str, Any], retry_after: int, limit: int) -> None:
    assert body == {"error": "Rate limited", "code": "rate_limited", "retry_after": retry_after}


def _msgpack_429(body: dict[str, Any], retry_after: int, limit: int) -> None:
    assert body == {"error": "rate_limited", "retry_after": retry_after}


# route, the family's 429 body, a valid token of the route (name in the bootstrap file)
FAMILIES: dict[str, tuple[Send, Callable[[dict[str, Any], int, int], None], str]] = {
    "logister": (logister, _logister_429, "logister_token"),
    "forge": (forge_bearer, _forge_429, "forge_token"),
    "msgpack-public": (msgpack_public, _msgpack_429, "msgpack_public_token"),
    "msgpack-legacy-key": (msgpack_legacy_key, _msgpack_429, "msgpack_public_token"),
    "msgpack-models": (msgpack_models, _msgpack_429, "msgpack_secret_key"),
    "msgpack-sql": (msgpack_sql_bearer, _msgpack_429, "msgpack_secret_key"),
    "msgpack-export": (msgpack_export, _msgpack_429, "msgpack_secret_key"),
}


def _gateway(make_gateway: MakeGateway, **overrides: Any) -> GatewayHarness:
    # The MessagePack per-address request limit (10/s) is another test's subject: out of the way.
    return make_gateway(msgpack_rate_limit_requests=10**6, export_requires_secret_key=True, **overrides)


@pytest.mark.parametrize("family", FAMILIES)
def test_130_bad_tokens_are_120_401_then_429_with_retry_after(make_gateway: MakeGateway, family: str) -> None:
    send, assert_429_body, _ = FAMILIES[family]
    gw = _gateway(make_gateway)
    statuses = [send(gw, f"guess_{n}").status_code for n in range(130)]
    assert statuses == [401] * 120 + [429] * 10

    refused = send(gw, "guess_130")
    retry_after = int(refused.headers["Retry-After"])
    assert 1 <= retry_after <= 60
    assert refused.headers["X-RateLimit-Limit"] == "120"
    assert refused.headers["X-RateLimit-Remaining"] == "0"
    assert_429_body(refused.json(), retry_after, 120)

    gw.clock.advance(60)  # the next window: a fresh budget
    assert send(gw, "guess_131").status_code == 401


@pytest.mark.parametrize("family", FAMILIES)
def test_a_right_guess_over_the_budget_is_refused_like_a_wrong_one(make_gateway: MakeGateway, family: str) -> None:
    send, _, token_name = FAMILIES[family]
    gw = _gateway(make_gateway, auth_failure_rate_limit_requests=3)
    assert [send(gw, "wrong").status_code for _ in range(3)] == [401] * 3
    assert send(gw, gw.tokens[token_name]).status_code == 429
    gw.clock.advance(60)
    assert send(gw, gw.tokens[token_name]).status_code not in (401, 429)


def test_one_budget_across_the_families(make_gateway: MakeGateway) -> None:
    """Guesses spread over the families use the same budget: the 8th failure anywhere is 429."""
    gw = _gateway(make_gateway, auth_failure_rate_limit_requests=7)
    routes = [send for send, _, _ in FAMILIES.values()]
    assert [send(gw, "wrong").status_code for send in routes] == [401] * 7
    for name, (send, assert_429_body, _) in FAMILIES.items():
        refused = send(gw, "wrong")
        assert refused.status_code == 429, name
        assert_429_body(refused.json(), int(refused.headers["Retry-After"]), 7)


def test_a_client_that_authenticated_beside_the_guesser_keeps_working(make_gateway: MakeGateway) -> None:
    """A shared NAT: a token that succeeded from the address since its first failure stays accepted."""
    gw = _gateway(make_gateway, auth_failure_rate_limit_requests=2)
    assert forge_bearer(gw, "flg_wrong").status_code == 401
    assert forge_bearer(gw, gw.tokens["forge_token"]).status_code == 201
    assert msgpack_public(gw, "wrong").status_code == 401
    assert msgpack_public(gw, "wrong").status_code == 429
    assert forge_bearer(gw, gw.tokens["forge_token"]).status_code == 201
    # A token not seen from this address in the window is refused: it could be a right guess.
    assert msgpack_public(gw, gw.tokens["msgpack_public_token"]).status_code == 429


def test_forwarded_addresses_from_an_untrusted_peer_share_the_budget(make_gateway: MakeGateway) -> None:
    gw = _gateway(make_gateway, auth_failure_rate_limit_requests=3)
    for n in range(3):
        spoofed = {"Authorization": "Bearer flg_wrong", "X-Forwarded-For": f"203.0.113.{n}"}
        assert gw.client.post("/v1/ingest/sessions", json=SESSION, headers=spoofed).status_code == 401
    spoofed = {"Authorization": "Bearer flg_wrong", "X-Forwarded-For": "198.51.100.7"}
    assert gw.client.post("/v1/ingest/sessions", json=SESSION, headers=spoofed).status_code == 429
