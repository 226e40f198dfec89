"""`forgeline projects retention` and `forgeline erase`: through the running processors' admin port.

A retention change goes through ``forgeline.manage.ops`` like the management API's, so it is
audited on control.console as ``cli:<login name>`` (erasure has its own audit, kept by the
processors).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

import httpx

from forgeline.bus.factory import create_bus
from forgeline.config import Settings
from forgeline.lifecycle.erasure import IDENTIFIER_KINDS
from forgeline.lifecycle.retention import KINDS
from forgeline.manage.ops import Management, Unavailable, cli_actor
from forgeline.manage.store import ConsoleStore
from forgeline.tenancy.store import TenancyAdmin
from services.runfile import admin_headers, admin_url

PROJECT_KINDS = tuple(kind for kind in KINDS if kind != "dead_letters")  # dead letters have no project


def add_retention_command(
    psub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    retention = psub.add_parser(
        "retention",
        parents=[common],
        help="show or set a project's retention per kind (e.g. --errors 30d --spans 7d)",
    )
    retention.add_argument("project", help="project name or id")
    for kind in PROJECT_KINDS:
        retention.add_argument(f"--{kind.replace('_', '-')}", dest=f"days_{kind}", metavar="DAYS",
                               help=f"keep {kind} this long (30d, 2w, 1y)")  # fmt: skip
    retention.add_argument("--admin-url", help="processors admin URL (default: from the running `up`)")


def add_erase_command(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    erase = sub.add_parser(
        "erase", parents=[common], help="erase one person's data: rows, uploads, exported lines (audited)"
    )
    erase.add_argument("--project", required=True, help="project name or id")
    for kind in IDENTIFIER_KINDS:
        erase.add_argument(f"--{kind.replace('_', '-')}", dest=kind, action="append", default=[],
                           help=f"the person's {kind.replace('_', ' ')} (repeatable)")  # fmt: skip
    erase.add_argument("--admin-url", help="processors admin URL (default: from the running `up`)")


def _project_id(settings: Settings, ref: str) -> str:
    async def find() -> str:
        bus = create_bus(settings.resolved_bus_url, settings.partitions)
        async with TenancyAdmin(bus) as admin:
            project = admin.table.project_by_name_or_id(ref)
        if project is None:
            raise LookupError(f"no project {ref!r} (is this the right --data-dir?)")
        return project.id

    return asyncio.run(find())


def _post(settings: Settings, explicit_url: str | None, path: str, doc: dict[str, Any]) -> dict[str, Any] | None:
    url = admin_url(settings, explicit_url)
    try:
        # Erasure waits for its mutations: give it time.
        response = httpx.post(f"{url}{path}", json=doc, headers=admin_headers(settings), timeout=600)
    except httpx.TransportError as err:
        print(f"forgeline: cannot reach the processors at {url} ({err}); is `forgeline up` running?", file=sys.stderr)
        return None
    try:
        body = response.json()
    except ValueError:
        body = {"error": response.text}
    if response.status_code != 200:
        print(f"forgeline: {body.get('error', body)}", file=sys.stderr)
        return None
    return dict(body)


def retention_command(settings: Settings, args: argparse.Namespace) -> int:
    given = {kind: getattr(args, f"days_{kind}") for kind in PROJECT_KINDS}
    days = {kind: value for kind, value in given.items() if value is not None}
    url = admin_url(settings, args.admin_url)
    try:
        result = asyncio.run(_retention(settings, url, args.project, days))
    except LookupError as err:
        print(f"forgeline: {err} (is this the right --data-dir?)", file=sys.stderr)
        return 1
    except (ValueError, Unavailable) as err:
        print(f"forgeline: {err}", file=sys.stderr)
        return 1
    own = result.get("own", {})
    for kind, value in result["days"].items():
        print(f"{kind:14} {value}d{'' if kind in own else '  (default)'}")
    if result.get("rewritten"):
        print(f"existing rows re-dated in: {', '.join(result['rewritten'])}", file=sys.stderr)
    return 0


async def _retention(settings: Settings, url: str, project_ref: str, days: dict[str, str]) -> dict[str, Any]:
    """Show (no ``days``) or set a project's retention through the management operations."""
    bus = create_bus(settings.resolved_bus_url, settings.partitions)
    async with (
        httpx.AsyncClient(base_url=url, headers=admin_headers(settings), timeout=600) as client,
        TenancyAdmin(bus) as tenancy,
        ConsoleStore(bus) as console,
    ):

        async def call(project_id: str, wanted: dict[str, int]) -> dict[str, Any]:
            return await _post_retention(client, url, project_id, wanted)

        manage = Management(tenancy, console, retention=call)
        if not days:
            return await manage.retention(cli_actor(), project_ref)
        return await manage.set_retention(cli_actor(), project_ref, days)


async def _post_retention(client: httpx.AsyncClient, url: str, project_id: str, days: dict[str, int]) -> dict[str, Any]:
    """``POST /retention`` of the processors' admin port (empty ``days``: read only)."""
    try:
        # Changing a project's days re-dates its existing rows: give it time.
        response = await client.post("/retention", json={"project_id": project_id, "days": days})
    except httpx.TransportError as err:
        raise Unavailable(f"cannot reach the processors at {url} ({err}); is `forgeline up` running?") from err
    try:
        body = response.json()
    except ValueError:
        body = {"error": response.text}
    message = str(body.get("error", body)) if isinstance(body, dict) else str(body)
    if response.status_code == 400:
        raise ValueError(message)
    if response.status_code != 200 or not isinstance(body, dict):
        raise Unavailable(message)
    return dict(body)


def erase_command(settings: Settings, args: argparse.Namespace) -> int:
    doc: dict[str, Any] = {f"{kind}s": list(getattr(args, kind)) for kind in IDENTIFIER_KINDS}
    if not any(doc.values()):
        print("forgeline: name the person: --player-id, --device-id, --user-id or --email", file=sys.stderr)
        return 2
    try:
        doc["project_id"] = _project_id(settings, args.project)
    except LookupError as err:
        print(f"forgeline: {err}", file=sys.stderr)
        return 1
    result = _post(settings, args.admin_url, "/erase", doc)
    if result is None:
        return 1
    for store in result.get("not_reached", []):
        print(f"forgeline: warning: not erased from {store}", file=sys.stderr)
    rows = sum(result["rows_deleted"].values())
    print(
        f"erased: {rows} rows, {result['blobs_deleted']} uploads, {result['export_lines_removed']} exported lines "
        f"({result['export_files_rewritten']} files rewritten); audit request {result['request_id']}"
    )
    return 0
