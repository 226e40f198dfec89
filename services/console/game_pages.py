"""Console pages beyond errors and traces: monitors, deployments, game sessions, bug reports
with their attachments, and analytics (funnels, trajectory heatmaps).

Each handler gets a page already checked for the signed-in user's access to its project;
every query is bound to that project, bounded in time and rows (``queries``).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from forgeline.blobstore.port import BlobStore, DownloadGrant, download_name
from forgeline.tenancy.model import Project
from services.console import level_model, queries

# Shown inline (an <img> on the report's page); anything else is a download.
INLINE_IMAGES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})
# Screenshots are read whole from the store to be shown; other files are signed downloads.
MAX_ATTACHMENT_BYTES = 64 * 1024 * 1024
# How long a signed download URL works: long enough to click, short enough not to be shared.
DOWNLOAD_URL_SECONDS = 300
HEATMAP_CELLS = 40
_UUID = re.compile(r"^[0-9a-fA-F-]{32,36}$")


class Rows(Protocol):
    async def rows(self, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]: ...


class PageLike(Protocol):
    request: Request
    project: Project

    def render(self, template: str, code: int = 200, **context: Any) -> Response: ...


def int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name, "")
    if not raw:
        return default
    if not raw.isascii() or not raw.isdigit() or not low <= int(raw) <= high:
        raise HTTPException(400, f"{name} must be a whole number from {low} to {high}")
    return int(raw)


def _uuid(raw: str, what: str) -> str:
    if not _UUID.match(raw):
        raise HTTPException(404, f"no such {what}")
    return raw


def _window(p: PageLike, default_days: int = 30) -> dict[str, Any]:
    page_no = int_param(p.request, "page", 1, 1, 10_000)
    return {
        "project": p.project.id,
        "days": int_param(p.request, "days", default_days, 1, queries.MAX_DAYS),
        "limit": queries.PAGE_SIZE + 1,
        "offset": (page_no - 1) * queries.PAGE_SIZE,
        "page": page_no,
    }


def _paged(rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], bool]:
    return rows[: queries.PAGE_SIZE], len(rows) > queries.PAGE_SIZE


def monitor_timeline(changes: list[dict[str, Any]], start_ms: int, end_ms: int) -> list[dict[str, Any]]:
    """Segments of the window [start_ms, end_ms] by state, from the state changes in it
    (oldest first): each is {state, left_pct, width_pct}. Before the first change the monitor
    was in that change's previous state."""
    if end_ms <= start_ms:
        return []
    segments: list[dict[str, Any]] = []
    state = str(changes[0]["previous_state"]) if changes else ""
    at = start_ms
    for change in changes:
        when = min(max(int(change["at_ms"]), start_ms), end_ms)
        if when > at and state:
            segments.append({"state": state, "from": at, "to": when})
        state, at = str(change["state"]), when
    if state and end_ms > at:
        segments.append({"state": state, "from": at, "to": end_ms})
    span = end_ms - start_ms
    return [
        {
            "state": s["state"],
            "left_pct": round(100 * (s["from"] - start_ms) / span, 2),
            "width_pct": round(100 * (s["to"] - s["from"]) / span, 2),
        }
        for s in segments
    ]


def floor_axis(paths: list[dict[str, Any]]) -> str:
    """The second axis of the floor plane: "z" when any path's z varies, else "y"."""
    return "z" if any(len(set(p.get("zs") or [])) > 1 for p in paths) else "y"


def heatmap(
    paths: list[dict[str, Any]], cells: int = HEATMAP_CELLS, extra: level_model.Bounds | None = None
) -> dict[str, Any]:
    """Points of every path binned on a cells×cells grid over their bounding box (grown to
    ``extra``, a level model's, when given), on the floor plane: (x, z) when z varies, else
    (x, y). Returns the grid and its bounds."""
    xs: list[float] = []
    vs: list[float] = []
    floor = floor_axis(paths)
    for path in paths:
        other = path.get("zs") if floor == "z" else path.get("ys")
        for x, v in zip(path.get("xs") or [], other or [], strict=False):
            xs.append(float(x))
            vs.append(float(v))
    if not xs:
        return {"grid": [], "max": 0, "points": 0}
    x0, x1, v0, v1 = level_model.union((min(xs), max(xs), min(vs), max(vs)), extra) or (0.0, 0.0, 0.0, 0.0)
    grid = [[0] * cells for _ in range(cells)]
    for x, v in zip(xs, vs, strict=True):
        cx = min(int((x - x0) / max(x1 - x0, 1e-9) * cells), cells - 1)
        cy = min(int((v - v0) / max(v1 - v0, 1e-9) * cells), cells - 1)
        grid[cells - 1 - cy][cx] += 1  # row 0 at the top of the picture
    return {
        "grid": grid,
        "max": max(max(row) for row in grid),
        "points": len(xs),
        "bounds": (x0, x1, v0, v1),
        "axes": ("x", floor),
    }


def _signed(store: BlobStore, p: PageLike, upload: dict[str, Any]) -> str:
    """A short-lived download URL of one attachment of the page's (already checked) project."""
    now = int(time.time())
    grant = DownloadGrant(
        key=upload["storage_key"],
        project_id=p.project.id,
        filename=upload["filename"],
        expires_at=now + DOWNLOAD_URL_SECONDS,
        issued_at=now,
    )
    try:
        return store.download_url(grant)
    except ValueError as err:  # a key no store may hold (InvalidKey): nothing to hand out
        raise HTTPException(404, "the attachment's file is not in the store") from err


def handlers(reader: Rows, blobs: Callable[[], BlobStore | None]) -> dict[str, Callable[[Any], Awaitable[Response]]]:
    async def monitors(p: PageLike) -> Response:
        window = _window(p)
        found, more = _paged(await reader.rows(queries.MONITORS, window))
        return p.render("monitors.html", monitors=found, more=more, page=window["page"])

    async def monitor(p: PageLike) -> Response:
        environment = p.request.query_params.get("environment", "")[:256]
        slug = p.request.query_params.get("slug", "")[:256]
        days = int_param(p.request, "days", 7, 1, queries.MAX_DAYS)
        states = [
            m
            for m in await reader.rows(queries.MONITORS, {"project": p.project.id, "limit": 10_000, "offset": 0})
            if m["environment"] == environment and m["slug"] == slug
        ]
        if not states:
            raise HTTPException(404, "no such monitor")
        params = {"project": p.project.id, "environment": environment, "slug": slug, "days": days}
        changes = await reader.rows(queries.MONITOR_CHANGES, params)
        end_ms = int(time.time() * 1000)
        start_ms = end_ms - days * 86_400_000
        timeline = monitor_timeline(changes, start_ms, end_ms)
        return p.render(
            "monitor.html", monitor=states[0], changes=list(reversed(changes)), timeline=timeline, days=days
        )

    async def deployments(p: PageLike) -> Response:
        window = _window(p, 90)
        found, more = _paged(await reader.rows(queries.DEPLOYMENTS, window))
        return p.render("deployments.html", deployments=found, more=more, page=window["page"])

    async def deployment(p: PageLike) -> Response:
        deployment_id = _uuid(p.request.path_params["deployment"], "deployment")
        found = await reader.rows(queries.DEPLOYMENT, {"project": p.project.id, "deployment": deployment_id})
        if not found:
            raise HTTPException(404, "no such deployment")
        release = found[0]
        groups = await reader.rows(
            queries.GROUPS_SINCE,
            {"project": p.project.id, "environment": release["environment"], "since": release["deployed"]},
        )
        return p.render("deployment.html", deployment=release, groups=groups)

    async def sessions(p: PageLike) -> Response:
        window = _window(p, 7) | {"player": p.request.query_params.get("player", "")[:256]}
        found, more = _paged(await reader.rows(queries.SESSIONS, window))
        return p.render("sessions.html", sessions=found, more=more, page=window["page"], player=window["player"])

    async def session(p: PageLike) -> Response:
        session_id = _uuid(p.request.path_params["session"], "session")
        found = await reader.rows(queries.SESSION, {"project": p.project.id, "session": session_id})
        if not found:
            raise HTTPException(404, "no such session")
        page_no = int_param(p.request, "page", 1, 1, 10_000)
        params = {
            "project": p.project.id,
            "session": session_id,
            "limit": 201,
            "offset": (page_no - 1) * 200,
        }
        events = await reader.rows(queries.SESSION_EVENTS, params)
        return p.render("session.html", session=found[0], events=events[:200], more=len(events) > 200, page=page_no)

    async def reports(p: PageLike) -> Response:
        window = _window(p)
        found, more = _paged(await reader.rows(queries.REPORTS, window))
        return p.render("reports.html", reports=found, more=more, page=window["page"])

    async def report(p: PageLike) -> Response:
        report_id = _uuid(p.request.path_params["report"], "bug report")
        found = await reader.rows(queries.REPORT, {"project": p.project.id, "report": report_id})
        if not found:
            raise HTTPException(404, "no such bug report")
        ids = [i for i in found[0]["upload_ids"] if _UUID.match(i)][:100]
        uploads = await reader.rows(queries.UPLOADS, {"project": p.project.id, "uploads": ids}) if ids else []
        store = blobs()
        for upload in uploads:
            upload["inline"] = upload["content_type"] in INLINE_IMAGES
            shown = f"/p/{p.project.id}/attachments/{upload['id']}"
            upload["url"] = shown if upload["inline"] or store is None else _signed(store, p, upload)
        return p.render("report.html", report=found[0], uploads=uploads)

    async def attachment(p: PageLike) -> Response:
        upload_id = _uuid(p.request.path_params["upload"], "attachment")
        found = await reader.rows(queries.UPLOAD, {"project": p.project.id, "upload": upload_id})
        store = blobs()
        if not found or store is None:
            raise HTTPException(404, "no such attachment")
        upload = found[0]
        if upload["content_type"] not in INLINE_IMAGES:
            # Not a screenshot: a signed download from the store itself, whatever its size.
            return RedirectResponse(_signed(store, p, upload), 303, headers={"Cache-Control": "private, no-store"})
        try:
            info = await asyncio.to_thread(store.stat, upload["storage_key"])
            if info.size > MAX_ATTACHMENT_BYTES:
                raise HTTPException(413, "this attachment is too large to open here: fetch it from the store")
            data = await asyncio.to_thread(store.get, upload["storage_key"])
        except (FileNotFoundError, KeyError, LookupError) as err:
            raise HTTPException(404, "the attachment's file is not in the store (yet)") from err
        return Response(
            data,
            media_type=upload["content_type"],
            headers={
                "Content-Disposition": f'inline; filename="{download_name(upload["filename"])}"',
                "X-Content-Type-Options": "nosniff",
                "Content-Security-Policy": "default-src 'none'; sandbox",
                "Cache-Control": "private, no-store",
            },
        )

    async def analytics(p: PageLike) -> Response:
        days = int_param(p.request, "days", 30, 1, queries.MAX_DAYS)
        base = {"project": p.project.id, "days": days}
        funnel = await reader.rows(queries.FUNNEL, base)
        top = max((int(s["players"]) for s in funnel), default=0) or 1
        for step in funnel:
            step["pct"] = round(100 * int(step["players"]) / top, 1)
        levels = await reader.rows(queries.LEVELS, base)
        level = p.request.query_params.get("level", "")[:256] or (levels[0]["level_id"] if levels else "")
        paths = await reader.rows(queries.TRAJECTORIES, base | {"level": level}) if level else []
        found = await reader.rows(queries.LEVEL_MODEL, {"project": p.project.id, "level": level}) if level else []
        model = await _model_layer(found[0], paths) if found else None
        heat = heatmap(paths, extra=model["mesh"].bounds if model and model.get("mesh") else None)
        if model and model.get("mesh") and heat["points"]:
            model["outlines"] = level_model.outlines(model["mesh"], heat["bounds"], HEATMAP_CELLS)
        return p.render("analytics.html", funnel=funnel, levels=levels, level=level, heat=heat, days=days, model=model)

    async def _model_layer(row: dict[str, Any], paths: list[dict[str, Any]]) -> dict[str, Any]:
        """What of the level's model the page can draw: a mesh, an image, or just its name."""
        layer: dict[str, Any] = {"filename": row["filename"], "size": int(row["size_bytes"]), "drawn": False}
        kind = "mesh" if level_model.is_obj(row["filename"], row["content_type"]) else ""
        kind = "image" if row["content_type"] in level_model.IMAGE_TYPES else kind
        store = blobs()
        if not kind or store is None or layer["size"] > level_model.MAX_DRAWN_BYTES:
            return layer
        try:
            data = await asyncio.to_thread(store.get, row["storage_key"])
        except (FileNotFoundError, ValueError):  # not (yet) in the store, or a key no store holds
            return layer
        if len(data) > level_model.MAX_DRAWN_BYTES:
            return layer
        if kind == "image":
            layer |= {"drawn": True, "image": level_model.image_data_uri(data, row["content_type"])}
        else:
            mesh = await asyncio.to_thread(level_model.parse_obj, data, floor_axis(paths))
            layer |= {"drawn": bool(mesh.faces), "mesh": mesh}
        return layer

    return {
        "monitors": monitors,
        "monitor": monitor,
        "deployments": deployments,
        "deployment": deployment,
        "sessions": sessions,
        "session": session,
        "reports": reports,
        "report": report,
        "attachment": attachment,
        "analytics": analytics,
    }
