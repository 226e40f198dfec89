"""Where a running `forgeline up` listens, and how the CLIs and the console reach its admin port.

`forgeline up` writes ``run.json`` into the data directory; `forgeline sql`, `export`,
`errors`, `retention`, `erase`, the backfill and the console look the admin URL up here,
so no command imports the supervisor to find it.
"""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import orjson

from forgeline.config import Settings
from forgeline.private_fs import open_private
from services.admin import connect_host

RUN_FILE = "run.json"


def write_run_file(data_dir: Path, doc: dict[str, object]) -> None:
    """Atomically replace ``run.json`` (0600: it names ports and PIDs of this user's pipeline)."""
    tmp = data_dir / (RUN_FILE + ".tmp")
    with os.fdopen(open_private(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), "wb") as handle:
        handle.write(orjson.dumps(doc))
    os.replace(tmp, data_dir / RUN_FILE)


def remove_run_file(data_dir: Path) -> None:
    (data_dir / RUN_FILE).unlink(missing_ok=True)


def read_run_file(data_dir: Path) -> dict[str, object] | None:
    path = data_dir / RUN_FILE
    if not path.exists():
        return None
    doc = orjson.loads(path.read_bytes())
    return doc if isinstance(doc, dict) else None


def configured_admin_url(settings: Settings) -> str:
    """The admin port the settings name, as a client on this machine reaches it."""
    return f"http://{connect_host(settings.admin_host)}:{settings.admin_port}"


def admin_url(settings: Settings, explicit: str | None = None) -> str:
    """``--admin-url``, else where the running `forgeline up` said, else the settings."""
    if explicit:
        return explicit.rstrip("/")
    run = read_run_file(settings.data_dir.resolve())
    if run and run.get("admin_url"):
        return str(run["admin_url"])
    return configured_admin_url(settings)


def admin_headers(settings: Settings) -> dict[str, str]:
    """The admin key from FORGELINE_ADMIN_KEY, when one is set (never from a file)."""
    return {"Authorization": f"Bearer {settings.admin_key.reveal()}"} if settings.admin_key else {}


def post_query(settings: Settings, url: str, sql: str, fmt: str, timeout: float = 60) -> httpx.Response:
    return httpx.post(
        f"{url}/query", json={"sql": sql, "format": fmt}, headers=admin_headers(settings), timeout=timeout
    )
