"""POST /query with "params": values are bound as quoted literals before the guard sees the text."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from starlette.testclient import TestClient

from services.admin import admin_app

pytestmark = pytest.mark.unit


class RecordingWarehouse:
    def __init__(self) -> None:
        self.statements: list[str] = []

    def query_formatted(self, sql: str, fmt: str) -> bytes:
        self.statements.append(sql)
        return b"{}\n"

    def insert(self, table: str, rows: Sequence[Sequence[Any]], columns: Sequence[str]) -> None: ...

    def insert_columns(self, table: str, data: Sequence[Sequence[Any]], columns: Sequence[str]) -> None: ...

    def query_rows(self, sql: str, parameters: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        return []

    def command(self, sql: str) -> None: ...

    def close(self) -> None: ...


def test_params_are_bound_before_the_statement_is_checked() -> None:
    warehouse = RecordingWarehouse()
    client = TestClient(admin_app(lambda: {}, warehouse, "k" * 20))  # type: ignore[arg-type]
    auth = {"Authorization": "Bearer " + "k" * 20}
    body = {"sql": "SELECT 1 WHERE p = %(p)s", "format": "JSONEachRow", "params": {"p": "x'; DROP TABLE t --"}}
    assert client.post("/query", json=body, headers=auth).status_code == 200
    assert warehouse.statements == ["SELECT 1 WHERE p = 'x\\'; DROP TABLE t --'"]
    # Without the key, nothing is bound or run; a bad params object is a 400.
    assert client.post("/query", json=body).status_code == 401
    for bad in ([1, 2], {"p": {"x": 1}}, {"p": [[1]]}):
        answer = client.post("/query", json={**body, "params": bad}, headers=auth)
        assert answer.status_code == 400, bad
    assert len(warehouse.statements) == 1
