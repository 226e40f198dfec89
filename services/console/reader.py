"""How the console reads the warehouse: parameterized queries through the processors'
admin port (the process that owns chDB), never a connection of its own.

Every query the console sends is fixed text with ``%(name)s`` placeholders; the admin
port binds the values (quoted by the ClickHouse client) and runs the result through the
same read-only guard as ``forgeline sql``.
"""

from __future__ import annotations

from typing import Any

import httpx
import orjson

from forgeline.manage.ops import Unavailable


class WarehouseUnavailable(Exception):
    """The admin port could not answer (processors restarting): the page says so, a 503."""


class AdminReader:
    def __init__(
        self,
        admin_url: str,
        admin_key: str = "",
        timeout_s: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,  # tests: the admin app in process
    ) -> None:
        headers = {"Authorization": f"Bearer {admin_key}"} if admin_key else {}
        self._client = httpx.AsyncClient(
            base_url=admin_url.rstrip("/"), headers=headers, timeout=timeout_s, transport=transport
        )

    async def rows(self, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        try:
            response = await self._client.post("/query", json={"sql": sql, "format": "JSONEachRow", "params": params})
        except httpx.TransportError as err:
            raise WarehouseUnavailable(f"the warehouse is not reachable: {err}") from err
        if response.status_code != 200:
            if response.status_code == 503 or response.status_code >= 500:
                raise WarehouseUnavailable(response.text[:500])
            # Our own query refused: a bug of ours, not the user's; say so plainly.
            raise RuntimeError(f"console query refused ({response.status_code}): {response.text[:500]}")
        return [orjson.loads(line) for line in response.content.splitlines() if line.strip()]

    async def retention(self, project_id: str, days: dict[str, int]) -> dict[str, Any]:
        """``POST /retention`` of the admin port: set ``days`` (empty: read) and return the policy."""
        try:
            response = await self._client.post("/retention", json={"project_id": project_id, "days": days})
        except httpx.TransportError as err:
            raise Unavailable(f"the processors' admin port is not reachable: {err}") from err
        try:
            doc = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            doc = {"error": response.text[:500]}
        message = str(doc.get("error", doc)) if isinstance(doc, dict) else str(doc)
        if response.status_code == 400:
            raise ValueError(message)
        if response.status_code != 200 or not isinstance(doc, dict):
            # 401 (admin keys differ), 404 (no warehouse there), 503: not the user's request.
            raise Unavailable(f"the processors refused ({response.status_code}): {message}")
        return doc

    async def close(self) -> None:
        await self._client.aclose()
