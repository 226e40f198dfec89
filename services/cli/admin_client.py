"""How CLI commands reach the processors' admin port (`forgeline sql`, `export`, `errors`)."""

from __future__ import annotations

import httpx

from forgeline.config import Settings
from services.admin import connect_host


def admin_url(settings: Settings, explicit: str | None = None) -> str:
    """``--admin-url``, else where the running `forgeline up` said, else the settings."""
    from services.supervisor.up import read_run_file

    if explicit:
        return explicit.rstrip("/")
    run = read_run_file(settings.data_dir.resolve())
    if run and run.get("admin_url"):
        return str(run["admin_url"])
    return f"http://{connect_host(settings.admin_host)}:{settings.admin_port}"


def admin_headers(settings: Settings) -> dict[str, str]:
    """The admin key from FORGELINE_ADMIN_KEY, when one is set (never from a file)."""
    return {"Authorization": f"Bearer {settings.admin_key}"} if settings.admin_key else {}


def post_query(settings: Settings, url: str, sql: str, fmt: str, timeout: float = 60) -> httpx.Response:
    return httpx.post(
        f"{url}/query", json={"sql": sql, "format": fmt}, headers=admin_headers(settings), timeout=timeout
    )
