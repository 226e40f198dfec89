"""401 codes on every family, and a token used the moment it is created."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import msgpack
import pytest

from forgeline.tenancy.store import TenancyAdmin
from tests.conftest import GatewayHarness

pytestmark = pytest.mark.contract

SESSION = {"build": {"version": "1.0.0", "platform": "windows", "channel": "dev"}, "player": {"externalId": "p1"}}
MSGPACK = {"Content-Type": "application/msgpack"}


def _logister(gw: GatewayHarness, token: str) -> Any:
    return gw.client.post(
        "/api/v1/ingest_events", json={"event": {"event_type": "log", "message": "hi"}}, headers={"X-Api-Key": token}
    )


def _forge(gw: GatewayHarness, token: str) -> Any:
    return gw.client.post("/v1/ingest/sessions", json=SESSION, headers={"Authorization": f"Bearer {token}"})


def _msgpack(gw: GatewayHarness, token: str) -> Any:
    body = msgpack.packb({"app_id": gw.tokens["msgpack_app_id"], "player_id": "p", "session_id": "s"})
    return gw.client.post("/api/player", content=body, headers={"x-public-token": token, **MSGPACK})


def _admin(gw: GatewayHarness, action: str) -> str:
    """Runs one admin action on the gateway's bus; returns a new token's secret when it makes one."""

    async def main() -> str:
        async with TenancyAdmin(gw.bus) as admin:
            project = gw.tokens["project_id"]
            if action == "archive":
                await admin.archive_project(project)
                return ""
            kinds = {"logister": "logister", "forge": "forge"}
            _, secret = await admin.create_token(kinds[action], project, "production")  # type: ignore[arg-type]
            return secret

    return asyncio.run(main())


@pytest.mark.parametrize("send", [_logister, _forge], ids=["logister", "forge"])
def test_a_token_works_the_moment_it_is_created(make_gateway: Any, send: Any) -> None:
    # The periodic catch-up is an hour away: only the read on an unknown token can find it.
    gw = make_gateway(token_refresh_seconds=3600)
    secret = _admin(gw, "logister" if send is _logister else "forge")
    response = send(gw, secret)
    assert response.status_code == 201, response.text


def test_every_family_names_the_refusal(gateway: GatewayHarness) -> None:
    logister, forge, public = (gateway.tokens[k] for k in ("logister_token", "forge_token", "msgpack_public_token"))
    # Each API's documented error text stays; the code is beside it.
    assert _logister(gateway, forge).json() == {"error": "Unauthorized", "code": "wrong_token_kind"}
    assert _forge(gateway, logister).json() == {"error": "Missing or invalid token", "code": "wrong_token_kind"}
    assert _msgpack(gateway, logister).json() == {"error": "unauthorized", "code": "wrong_token_kind"}
    assert _msgpack(gateway, "mpk_pub_unknown").json()["code"] == "invalid_token"
    assert _msgpack(gateway, "").json()["code"] == "missing_token"
    _admin(gateway, "archive")
    deadline = time.monotonic() + 5  # archiving reaches the gateway with its periodic catch-up
    while _logister(gateway, logister).status_code != 401 and time.monotonic() < deadline:
        time.sleep(0.05)
    for send, token in ((_logister, logister), (_forge, forge), (_msgpack, public)):
        response = send(gateway, token)
        assert (response.status_code, response.json()["code"]) == (401, "project_archived")


def test_unknown_tokens_still_spend_the_failure_budget(make_gateway: Any) -> None:
    gw = make_gateway(auth_failure_rate_limit_requests=2)
    assert [_logister(gw, f"lgst_guess{n}").status_code for n in range(3)] == [401, 401, 429]
    assert _forge(gw, "flg_guess").status_code == 429
