"""Forge Logger helpers shared by contract tests."""

from __future__ import annotations

from tests.conftest import GatewayHarness


def new_session(gw: GatewayHarness, token: str | None = None) -> str:
    """A session started through the gateway (sessions, events and uploads cite only these)."""
    response = gw.client.post(
        "/v1/ingest/sessions",
        json={"build": {"version": "1.0.0", "platform": "linux"}},
        headers={"Authorization": f"Bearer {token or gw.tokens['forge_token']}"},
    )
    assert response.status_code == 201, response.text
    return str(response.json()["sessionId"])
