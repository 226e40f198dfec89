"""POST /api/export: one control.exporter record per request window, rate limited, optional secret key."""

from __future__ import annotations

from typing import Any

import pytest

from forgeline.bus.topics import CONTROL_EXPORTER
from tests.conftest import GatewayHarness

pytestmark = pytest.mark.contract


def _requests(gw: GatewayHarness) -> list[dict[str, Any]]:
    return gw.raw(CONTROL_EXPORTER)


def test_a_request_appends_one_flush_record_and_touches_nothing_else(gateway: GatewayHarness) -> None:
    response = gateway.client.post("/api/export")
    assert response.status_code == 200, response.text
    assert response.json() == {"status": "queued", "coalesced": False}
    [request] = _requests(gateway)
    assert request["action"] == "flush" and request["requested_at"] == int(gateway.clock.time() * 1000)
    assert not (gateway.settings.data_dir / "exports").exists()  # the gateway never writes files


def test_requests_within_the_window_coalesce_into_one_record(make_gateway: Any) -> None:
    gw = make_gateway(export_request_interval_seconds=2.0)
    answers = [gw.client.post("/api/export").json()["coalesced"] for _ in range(5)]
    assert answers == [False, True, True, True, True]
    assert len(_requests(gw)) == 1
    gw.clock.advance(2.0)
    assert gw.client.post("/api/export").json() == {"status": "queued", "coalesced": False}
    assert len(_requests(gw)) == 2


def test_export_is_rate_limited_per_source_ip(make_gateway: Any) -> None:
    gw = make_gateway(msgpack_rate_limit_requests=3)
    statuses = [gw.client.post("/api/export").status_code for _ in range(5)]
    assert statuses == [200, 200, 200, 429, 429]
    assert len(_requests(gw)) == 1


def test_the_secret_key_can_be_required(make_gateway: Any) -> None:
    gw = make_gateway(export_requires_secret_key=True)
    assert gw.client.post("/api/export").status_code == 401
    public = gw.client.post("/api/export", headers={"x-api-key": gw.tokens["msgpack_public_token"]})
    assert public.status_code == 403 and public.json()["error"] == "forbidden"
    assert _requests(gw) == []
    secret = gw.client.post("/api/export", headers={"Authorization": f"Bearer {gw.tokens['msgpack_secret_key']}"})
    assert secret.status_code == 200
    assert [r["action"] for r in _requests(gw)] == ["flush"]


def test_the_route_is_documented(gateway: GatewayHarness) -> None:
    doc = gateway.client.get("/openapi.json").json()["paths"]["/api/export"]["post"]
    assert set(doc["responses"]) >= {"200", "401", "403", "429", "503"}
