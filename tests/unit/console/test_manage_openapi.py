"""The management API's OpenAPI document describes exactly the routes it serves."""

from __future__ import annotations

from unittest.mock import MagicMock

import pytest
from starlette.routing import Route

from services.console.api import PREFIX, management_routes, openapi_document

pytestmark = pytest.mark.unit


def test_every_route_is_documented_and_every_documented_operation_is_served() -> None:
    served = {
        (route.path, method.lower())
        for route in management_routes(MagicMock())
        if isinstance(route, Route) and route.path != f"{PREFIX}/openapi.json"
        for method in (route.methods or ()) - {"HEAD"}
    }
    doc = openapi_document()
    documented = {
        (path, method)
        for path, item in doc["paths"].items()
        for method in item
        if method in ("get", "post", "patch", "put", "delete")
    }
    assert served == documented
    for path, item in doc["paths"].items():
        params = {p["name"] for p in item.get("parameters", [])}
        assert params == {part[1:-1] for part in path.split("/") if part.startswith("{")}, path
        for method in ("get", "post", "patch"):
            if method in item:
                assert {"400", "401", "403", "404"} <= set(item[method]["responses"]), (path, method)
