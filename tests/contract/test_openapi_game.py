"""/openapi.json documents every route the gateway serves, the game families included."""

from __future__ import annotations

import pytest
from starlette.routing import Route

from tests.conftest import GatewayHarness

pytestmark = pytest.mark.contract


def test_every_route_is_documented(gateway: GatewayHarness) -> None:
    documented = gateway.client.get("/openapi.json").json()["paths"]
    served = {route.path for route in gateway.client.app.routes if isinstance(route, Route)}
    assert served <= set(documented)
