"""The gateway's /metrics shows the gateway's series, not the processors' it happens to import."""

from __future__ import annotations

import pytest

from tests.conftest import GatewayHarness

pytestmark = pytest.mark.contract


def test_gateway_metrics_show_only_gateway_series(gateway: GatewayHarness) -> None:
    import services.exporter.main  # noqa: F401  - registers processor series in this process
    import services.spans.main  # noqa: F401

    body = {"event": {"event_type": "log", "message": "hi"}}
    assert gateway.client.post("/api/v1/ingest_events", json=body, headers=gateway.auth).status_code == 201
    text = gateway.client.get("/metrics").text
    names = {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")}
    assert "forgeline_gateway_tokens_loaded" in names and "forgeline_gateway_requests_total" in names
    assert "process_cpu_seconds_total" in names or "python_info" in names
    others = sorted(
        n for n in names if n.startswith("forgeline_") and not n.startswith(("forgeline_gateway_", "forgeline_bus_"))
    )
    assert others == [], others
