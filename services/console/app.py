"""The console: server-rendered pages over the warehouse and the management operations.

Every page under ``/p/{project}/`` first checks that the signed-in user may see that
project; one they may not is a 404, the same as one that does not exist. Jinja2
autoescaping is on for every template, so event text is always shown as text.
"""

from __future__ import annotations

import asyncio
import math
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jinja2
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from forgeline.blobstore.port import BlobStore
from forgeline.bus.port import OutgoingRecord
from forgeline.clientip import ClientAddress
from forgeline.manage.model import ConsoleUser
from forgeline.manage.ops import PROJECT_RETENTION_KINDS, Actor, Management, Unavailable, verify_password
from forgeline.notify.model import PROVIDER_SPECS, PROVIDERS, SUBJECTS
from forgeline.tenancy.model import TOKEN_KINDS, Project
from services.console import game_pages, queries
from services.console.api import management_routes
from services.console.reader import AdminReader, WarehouseUnavailable
from services.console.sessions import (
    LAST_PROJECT_COOKIE,
    LOGIN_NONCE_COOKIE,
    SESSION_COOKIE,
    SESSION_SECONDS,
    LoginThrottle,
    Signer,
)
from services.errors.steps import control_record

HERE = Path(__file__).parent
STATUSES = ("unresolved", "regressed", "resolved", "ignored")
GROUP_ACTIONS = ("resolve", "ignore", "unresolve")
_HEX_ID = frozenset("0123456789abcdefABCDEF-")
# The sections of a project's pages: the project switcher opens the same one in another project.
SECTIONS = ("errors", "traces", "monitors", "sessions", "reports", "deployments", "analytics", "settings")


# A notify target's settings fields (those of `forgeline notify add`), each with the providers taking it.
def _notify_fields() -> dict[str, tuple[str, ...]]:
    fields: dict[str, tuple[str, ...]] = {}
    for provider, spec in PROVIDER_SPECS.items():
        for name in (*spec.required, *spec.optional):
            fields[name] = (*fields.get(name, ()), provider)
    return fields


NOTIFY_FIELDS = _notify_fields()


@dataclass
class ConsoleDeps:
    manage: Management
    reader: AdminReader
    send_control: Callable[[OutgoingRecord], Awaitable[None]]
    signer: Signer
    throttle: LoginThrottle = field(default_factory=LoginThrottle)
    secure_cookies: bool = False
    gateway_url: str = ""
    # True once the control topics have been read to their end (main.py's lifespan).
    ready: Callable[[], bool] = lambda: True
    # Where bug-report attachments are (the gateway's blob store); None: not reachable here.
    blobs: BlobStore | None = None
    # Who the client is for the sign-in throttle: the gateway's rule (FORGELINE_TRUSTED_PROXIES).
    client_address: ClientAddress = field(default_factory=lambda: ClientAddress(()))


def _int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name, "")
    if not raw:
        return default
    if not raw.isascii() or not raw.isdigit() or not low <= int(raw) <= high:
        raise HTTPException(400, f"{name} must be a whole number from {low} to {high}")
    return int(raw)


def _sparkline(counts: dict[str, int], days: int = 14) -> list[int]:
    today = datetime.now(UTC).date()
    return [counts.get(str(today - timedelta(days=days - 1 - i)), 0) for i in range(days)]


def console_app(deps: ConsoleDeps) -> Starlette:
    # Autoescaping on for every template, whatever its name: event text is never markup.
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(HERE / "templates")), autoescape=True)
    templates = Jinja2Templates(env=env)
    manage = deps.manage

    def user_of(request: Request) -> tuple[ConsoleUser, str] | None:
        session = deps.signer.read(request.cookies.get(SESSION_COOKIE))
        if session is None:
            return None
        user = manage.console.table.users.get(session.user_id)
        if user is None or user.disabled:
            return None
        return user, session.csrf

    def actor_of(user: ConsoleUser) -> Actor:
        return Actor(name=f"user:{user.username}", scope="", projects=user.projects)

    def render(request: Request, template: str, code: int = 200, **context: Any) -> Response:
        response: Response = templates.TemplateResponse(request, template, context, status_code=code)
        response.headers["Content-Security-Policy"] = (
            "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; script-src 'self'; "
            "frame-ancestors 'none'; form-action 'self'"
        )
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "same-origin"
        return response

    class Page:
        """A signed-in request to one project the user may access."""

        def __init__(self, request: Request, user: ConsoleUser, csrf: str, project: Project) -> None:
            self.request, self.user, self.csrf, self.project = request, user, csrf, project
            self.actor = actor_of(user)

        def render(self, template: str, code: int = 200, **context: Any) -> Response:
            parts = self.request.url.path.split("/")  # /p/<project>/<section>/…
            return render(
                self.request,
                template,
                code,
                user=self.user,
                csrf=self.csrf,
                project=self.project,
                # The switcher's choices: only the projects this user may see.
                projects=manage.projects(self.actor),
                section=parts[3] if len(parts) > 3 and parts[3] in SECTIONS else "errors",
                **context,
            )

        async def checked_form(self) -> FormData:
            form = await self.request.form()
            if not secrets.compare_digest(str(form.get("csrf", "")), self.csrf):
                raise HTTPException(403, "the form has expired or did not come from this console: reload and retry")
            return form

    async def signed_in(request: Request) -> tuple[ConsoleUser, str] | None:
        # Users first: a user disabled a moment ago (another replica, the CLI) is refused now.
        await manage.console.catch_up()
        return user_of(request)

    async def page(request: Request) -> Page | Response:
        found = await signed_in(request)
        if found is None:
            return RedirectResponse(f"/login?next={request.url.path}", status_code=303)
        user, csrf = found
        ref = request.path_params["project"]
        project = manage.tenancy.table.projects.get(ref)
        if project is None or not user.may_access(project.id):
            raise HTTPException(404, "no such project")
        return Page(request, user, csrf, project)

    def guarded(handler: Callable[[Page], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            current = await page(request)
            if isinstance(current, Response):
                return current
            try:
                response = await handler(current)
            except WarehouseUnavailable as err:
                return current.render("message.html", 503, title="Warehouse unavailable", message=str(err))
            if response.status_code < 400:
                remember_project(response, current.project.id)
            return response

        return endpoint

    def remember_project(response: Response, project_id: str) -> None:
        response.set_cookie(
            LAST_PROJECT_COOKIE,
            project_id,
            max_age=365 * 86400,
            httponly=True,
            samesite="lax",
            secure=deps.secure_cookies,
        )

    # Sign-in ----------------------------------------------------------------------------

    async def login_form(request: Request, error: str = "", status: int = 200) -> Response:
        nonce = secrets.token_urlsafe(24)
        response = render(request, "login.html", status, nonce=nonce, error=error, next=_safe_next(request))
        response.set_cookie(
            LOGIN_NONCE_COOKIE, nonce, max_age=3600, httponly=True, samesite="strict", secure=deps.secure_cookies
        )
        return response

    async def login(request: Request) -> Response:
        if request.method == "GET":
            return await login_form(request)
        form = await request.form()
        nonce = request.cookies.get(LOGIN_NONCE_COOKIE, "")
        if not nonce or not secrets.compare_digest(str(form.get("csrf", "")), nonce):
            return await login_form(request, "The sign-in form expired; please try again.", 403)
        username, password = str(form.get("username", ""))[:256], str(form.get("password", ""))[:1024]
        address = deps.client_address.of(request)
        wait = deps.throttle.retry_after(username, address)
        if wait > 0:
            response = await login_form(request, f"Too many failed sign-ins; try again in {int(wait) + 1} s.", 429)
            response.headers["Retry-After"] = str(int(wait) + 1)
            return response
        await manage.refresh()
        user = manage.console.table.user_by_name(username)
        # Verify against a real hash even for an unknown name, so timing does not tell names apart.
        # argon2 takes tens of milliseconds of CPU on purpose: off the event loop.
        checked = await asyncio.to_thread(verify_password, user.password_hash if user else _DUMMY_HASH, password)
        ok = checked and user is not None
        if not ok or user is None or user.disabled:
            deps.throttle.failed(username, address)
            return await login_form(request, "Wrong user name or password.", 401)
        deps.throttle.succeeded(username)
        cookie, _session = deps.signer.issue(user.id)
        response = RedirectResponse(_safe_next(request, form.get("next")), status_code=303)
        response.set_cookie(
            SESSION_COOKIE,
            cookie,
            max_age=SESSION_SECONDS,
            httponly=True,
            samesite="lax",
            secure=deps.secure_cookies,
        )
        response.delete_cookie(LOGIN_NONCE_COOKIE)
        return response

    async def logout(request: Request) -> Response:
        found = user_of(request)
        form = await request.form()
        if found is not None and not secrets.compare_digest(str(form.get("csrf", "")), found[1]):
            raise HTTPException(403, "bad form token")
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE)
        return response

    def last_project(request: Request, projects: list[Project]) -> Project | None:
        """The project this browser opened last, if this user may still see it; else the only one."""
        last = request.cookies.get(LAST_PROJECT_COOKIE, "")
        for project in projects:
            if project.id == last:
                return project
        return projects[0] if len(projects) == 1 else None

    async def home(request: Request) -> Response:
        found = await signed_in(request)
        if found is None:
            return RedirectResponse("/login", status_code=303)
        projects = manage.projects(actor_of(found[0]))
        if not projects:
            return render(request, "message.html", 200, title="No projects", message="You have no projects yet.")
        chosen = last_project(request, projects)
        if chosen is None:
            return RedirectResponse("/projects", status_code=303)
        return RedirectResponse(f"/p/{chosen.id}/errors", status_code=303)

    async def project_list(request: Request) -> Response:
        found = await signed_in(request)
        if found is None:
            return RedirectResponse("/login?next=/projects", status_code=303)
        user, csrf = found
        projects = manage.projects(actor_of(user))
        last = request.cookies.get(LAST_PROJECT_COOKIE, "")
        return render(request, "projects.html", user=user, csrf=csrf, all_projects=projects, last=last)

    async def switch_project(request: Request) -> Response:
        """The header's project switcher (a GET form): the same section of the chosen project."""
        found = await signed_in(request)
        if found is None:
            return RedirectResponse("/login", status_code=303)
        ref = request.query_params.get("project", "")
        project = manage.tenancy.table.projects.get(ref)
        if project is None or not found[0].may_access(project.id):
            raise HTTPException(404, "no such project")
        section = request.query_params.get("to", "errors")
        return RedirectResponse(f"/p/{project.id}/{section if section in SECTIONS else 'errors'}", status_code=303)

    # Errors -----------------------------------------------------------------------------

    async def errors_inbox(p: Page) -> Response:
        status = p.request.query_params.get("status", "unresolved")
        if status not in (*STATUSES, "all"):
            raise HTTPException(400, f"status is one of {', '.join(STATUSES)}, all")
        days = _int_param(p.request, "days", 14, 1, queries.MAX_DAYS)
        page_no = _int_param(p.request, "page", 1, 1, 10_000)
        params = {
            "project": p.project.id,
            "days": days,
            "status": "" if status == "all" else status,
            "limit": queries.PAGE_SIZE + 1,
            "offset": (page_no - 1) * queries.PAGE_SIZE,
        }
        groups = await deps.reader.rows(queries.ERROR_GROUPS, params)
        more = len(groups) > queries.PAGE_SIZE
        groups = groups[: queries.PAGE_SIZE]
        lines: dict[str, dict[str, int]] = {}
        if groups:
            ids = [g["group_id"] for g in groups]
            for row in await deps.reader.rows(queries.GROUP_SPARKLINES, {"project": p.project.id, "groups": ids}):
                lines.setdefault(row["group_id"], {})[row["day"]] = int(row["n"])
        for group in groups:
            group["shown_status"] = _shown_status(group)
            counts = _sparkline(lines.get(group["group_id"], {}))
            group["spark"] = counts
            group["spark_max"] = max(counts) or 1
        return p.render(
            "errors.html", groups=groups, status=status, days=days, page=page_no, more=more, statuses=STATUSES
        )

    async def error_group(p: Page) -> Response:
        group_id = p.request.path_params["group"]
        if not group_id or len(group_id) > 64 or not set(group_id) <= _HEX_ID:
            raise HTTPException(404, "no such error group")
        found = await deps.reader.rows(queries.ERROR_GROUP, {"project": p.project.id, "group": group_id})
        if not found:
            raise HTTPException(404, "no such error group")
        group = found[0]
        group["shown_status"] = _shown_status(group)
        events = await deps.reader.rows(
            queries.GROUP_EVENTS, {"project": p.project.id, "group": group_id, "days": queries.MAX_DAYS, "limit": 20}
        )
        return p.render("group.html", group=group, events=events, actions=GROUP_ACTIONS)

    async def group_action(p: Page) -> Response:
        form = await p.checked_form()
        action = str(form.get("action", ""))
        if action not in GROUP_ACTIONS:
            raise HTTPException(400, f"action is one of {', '.join(GROUP_ACTIONS)}")
        group_id = p.request.path_params["group"]
        if not group_id or len(group_id) > 64 or not set(group_id) <= _HEX_ID:
            raise HTTPException(404, "no such error group")
        found = await deps.reader.rows(queries.ERROR_GROUP, {"project": p.project.id, "group": group_id})
        if not found:
            raise HTTPException(404, "no such error group")
        # The same control record as `forgeline errors resolve|ignore|unresolve`.
        await deps.send_control(control_record(p.project.id, found[0]["fingerprint"], action, int(time.time() * 1000)))
        return RedirectResponse(f"/p/{p.project.id}/errors/{group_id}?changed={action}", status_code=303)

    # Traces -----------------------------------------------------------------------------

    async def traces(p: Page) -> Response:
        q = p.request.query_params
        trace_id, name = q.get("trace", "").strip()[:64], q.get("name", "").strip()[:256]
        min_ms = _int_param(p.request, "min_ms", 0, 0, 86_400_000)
        days = _int_param(p.request, "days", 7, 1, queries.MAX_DAYS)
        page_no = _int_param(p.request, "page", 1, 1, 10_000)
        params = {
            "project": p.project.id,
            "trace": trace_id,
            "name": name,
            "min_ms": min_ms,
            "days": days,
            "limit": queries.PAGE_SIZE + 1,
            "offset": (page_no - 1) * queries.PAGE_SIZE,
        }
        found = await deps.reader.rows(queries.TRACES, params)
        return p.render(
            "traces.html",
            traces=found[: queries.PAGE_SIZE],
            more=len(found) > queries.PAGE_SIZE,
            page=page_no,
            trace=trace_id,
            name=name,
            min_ms=min_ms,
            days=days,
        )

    async def trace(p: Page) -> Response:
        trace_id = p.request.path_params["trace"][:64]
        spans = await deps.reader.rows(queries.TRACE_SPANS, {"project": p.project.id, "trace": trace_id})
        if not spans:
            raise HTTPException(404, "no such trace (yet: a trace appears a few seconds after its last span)")
        start = min(int(s["start_ms"]) for s in spans)
        end = max(int(s["end_ms"]) for s in spans)
        total = max(end - start, 1)
        for span in spans:
            span["offset_pct"] = round(100 * (int(span["start_ms"]) - start) / total, 2)
            span["width_pct"] = max(round(100 * (int(span["end_ms"]) - int(span["start_ms"])) / total, 2), 0.3)
        return p.render("trace.html", trace_id=trace_id, spans=_tree_order(spans), total_ms=total)

    # Settings ---------------------------------------------------------------------------

    async def settings_page(
        p: Page,
        new_token: str = "",
        error: str = "",
        status: int = 200,
        signing_secret: str = "",
        notify_form: dict[str, str] | None = None,
    ) -> Response:
        await manage.refresh()
        retention: dict[str, Any] | None = None
        retention_error = ""
        try:
            retention = await manage.retention(p.actor, p.project.id)
        except Unavailable as err:
            retention_error = str(err)  # the rest of Settings still works
        return p.render(
            "settings.html",
            int(status),
            tokens=manage.tokens(p.actor, p.project.id),
            applications=manage.applications(p.actor, p.project.id),
            targets=manage.notify_targets(p.actor, p.project.id) if manage.targets is not None else [],
            # The project's latest changes (who, when, what), newest first.
            audit=[e for e in reversed(manage.console.table.audit) if e.project_id == p.project.id][:20],
            kinds=TOKEN_KINDS,
            new_token=new_token,
            error=error,
            gateway_url=deps.gateway_url,
            retention=retention,
            retention_error=retention_error,
            everywhere=p.actor.everywhere,
            # Adding targets: only where the notifier's key is at hand (main._cannot_add_targets).
            notify_managed=manage.targets is not None,
            cannot_add_targets=manage.cannot_add_targets,
            providers=PROVIDERS,
            subjects=SUBJECTS,
            notify_fields=NOTIFY_FIELDS,
            notify_form=notify_form or {},
            signing_secret=signing_secret,
        )

    async def settings_failed(p: Page, err: Exception, notify_form: dict[str, str] | None = None) -> Response:
        """The Settings page with what went wrong, under the management API's status for it."""
        if isinstance(err, PermissionError):
            status = 403
        elif isinstance(err, LookupError):
            status = 404
        elif isinstance(err, Unavailable):
            status = 503
        else:
            status = 400
        return await settings_page(p, error=str(err), status=status, notify_form=notify_form)

    # Projects: the same operations (scope checks, audit) as the API's /projects routes.

    async def create_project(p: Page) -> Response:
        form = await p.checked_form()
        try:
            created = await manage.create_project(p.actor, str(form.get("name", "")))
        except (ValueError, LookupError, PermissionError) as err:
            return await settings_failed(p, err)
        return RedirectResponse(f"/p/{created.id}/settings", status_code=303)

    async def rename_project(p: Page) -> Response:
        form = await p.checked_form()
        try:
            await manage.rename_project(p.actor, p.project.id, str(form.get("name", "")))
        except (ValueError, LookupError, PermissionError) as err:
            return await settings_failed(p, err)
        return RedirectResponse(f"/p/{p.project.id}/settings", status_code=303)

    async def archive_project(p: Page) -> Response:
        form = await p.checked_form()
        try:
            # Always a confirmation (blank included): the project's name typed again, as the API's.
            await manage.set_archived(p.actor, p.project.id, True, str(form.get("confirm", "")))
        except (ValueError, LookupError, PermissionError) as err:
            return await settings_failed(p, err)
        return RedirectResponse(f"/p/{p.project.id}/settings", status_code=303)

    async def unarchive_project(p: Page) -> Response:
        await p.checked_form()
        try:
            await manage.set_archived(p.actor, p.project.id, False)
        except (ValueError, LookupError, PermissionError) as err:
            return await settings_failed(p, err)
        return RedirectResponse(f"/p/{p.project.id}/settings", status_code=303)

    # Notify targets: the same operation as `forgeline notify add` and the API (egress rules included).

    async def add_target(p: Page) -> Response:
        form = await p.checked_form()
        provider = str(form.get("provider", ""))
        settings = {name: str(form.get(name, "")).strip() for name in NOTIFY_FIELDS}
        # What the page shows again after a refusal: never the secret.
        kept = {"provider": provider, "name": str(form.get("name", "")), "rate": str(form.get("rate", ""))}
        kept |= {name: value for name, value in settings.items() if value}
        subjects = tuple(str(s) for s in form.getlist("subjects"))
        kept["subjects"] = ",".join(subjects)
        try:
            rate_text = str(form.get("rate", "")).strip() or "0"
            try:
                rate = float(rate_text)
            except ValueError:
                raise ValueError("rate is a number of requests per second (blank: the provider's default)") from None
            if not math.isfinite(rate):
                raise ValueError("rate is a number of requests per second (blank: the provider's default)")
            _target, generated = await manage.add_notify_target(
                p.actor,
                p.project.id,
                provider,
                str(form.get("name", "")),
                {name: value for name, value in settings.items() if value},
                str(form.get("secret", "")),
                subjects,
                rate,
                form.get("allow_private") == "on",
            )
        except (ValueError, LookupError, PermissionError) as err:
            return await settings_failed(p, err, kept)
        if not generated:
            return RedirectResponse(f"/p/{p.project.id}/settings", status_code=303)
        # A webhook's generated signing secret: shown once, in this response only.
        response = await settings_page(p, signing_secret=generated)
        response.headers["Cache-Control"] = "no-store"
        return response

    async def settings(p: Page) -> Response:
        return await settings_page(p)

    async def set_retention(p: Page) -> Response:
        form = await p.checked_form()
        # Blank fields keep their days; only what was typed is sent (and audited).
        given = {kind: str(form[kind]).strip() for kind in PROJECT_RETENTION_KINDS if str(form.get(kind, "")).strip()}
        try:
            await manage.set_retention(p.actor, p.project.id, given)
        except (ValueError, LookupError, PermissionError) as err:
            return await settings_page(p, error=str(err), status=400)
        except Unavailable as err:
            return await settings_page(p, error=str(err), status=503)
        return RedirectResponse(f"/p/{p.project.id}/settings", status_code=303)

    async def create_token(p: Page) -> Response:
        form = await p.checked_form()
        try:
            _token, secret = await manage.create_token(
                p.actor,
                str(form.get("kind", "")),
                p.project.id,
                str(form.get("environment", "") or "production"),
                str(form.get("application", "")) or None,
                str(form.get("name", "")),
            )
        except (ValueError, LookupError, PermissionError) as err:
            return await settings_page(p, error=str(err), status=400)
        # Shown once, in this response only (never in a URL, never stored).
        response = await settings_page(p, new_token=secret)
        response.headers["Cache-Control"] = "no-store"
        return response

    async def revoke_token(p: Page) -> Response:
        await p.checked_form()
        token_id = p.request.path_params["token"]
        token = manage.tenancy.table.tokens.get(token_id)
        if token is None or token.project_id != p.project.id:
            raise HTTPException(404, "no such token")
        await manage.revoke_token(p.actor, token_id)
        return RedirectResponse(f"/p/{p.project.id}/settings", status_code=303)

    async def remove_target(p: Page) -> Response:
        await p.checked_form()
        target_id = p.request.path_params["target"]
        if manage.targets is None or target_id not in manage.targets.table.targets:
            raise HTTPException(404, "no such notification target")
        if manage.targets.table.targets[target_id].project_id != p.project.id:
            raise HTTPException(404, "no such notification target")
        await manage.remove_notify_target(p.actor, target_id)
        return RedirectResponse(f"/p/{p.project.id}/settings", status_code=303)

    async def create_application(p: Page) -> Response:
        form = await p.checked_form()
        try:
            await manage.create_application(p.actor, p.project.id, str(form.get("name", "")))
        except (ValueError, LookupError, PermissionError) as err:
            return await settings_page(p, error=str(err), status=400)
        return RedirectResponse(f"/p/{p.project.id}/settings", status_code=303)

    async def health(request: Request) -> Response:
        return PlainTextResponse("ok")

    async def readiness(request: Request) -> Response:
        ok = deps.ready()
        return PlainTextResponse("ready" if ok else "starting", status_code=200 if ok else 503)

    async def metrics(request: Request) -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    async def not_found_or_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if request.url.path.startswith("/api/"):
            from starlette.responses import JSONResponse

            return JSONResponse({"error": exc.detail}, status_code=exc.status_code)
        return render(request, "message.html", exc.status_code, title=f"{exc.status_code}", message=str(exc.detail))

    game = game_pages.handlers(deps.reader, lambda: deps.blobs)

    async def dashboard_analytics(request: Request) -> Response:
        """Where the MessagePack API's documentation sends analysts: the first project's analytics."""
        found = user_of(request)
        if found is None:
            return RedirectResponse("/login?next=/dashboard/analytics", status_code=303)
        projects = manage.projects(actor_of(found[0]))
        if not projects:
            raise HTTPException(404, "you have no projects")
        chosen = last_project(request, projects) or projects[0]
        return RedirectResponse(f"/p/{chosen.id}/analytics", status_code=303)

    routes = [
        Route("/", home),
        Route("/projects", project_list),
        Route("/switch", switch_project),
        Route("/dashboard/analytics", dashboard_analytics),
        Route("/p/{project}/monitors", guarded(game["monitors"])),
        Route("/p/{project}/monitor", guarded(game["monitor"])),
        Route("/p/{project}/deployments", guarded(game["deployments"])),
        Route("/p/{project}/deployments/{deployment}", guarded(game["deployment"])),
        Route("/p/{project}/sessions", guarded(game["sessions"])),
        Route("/p/{project}/sessions/{session}", guarded(game["session"])),
        Route("/p/{project}/reports", guarded(game["reports"])),
        Route("/p/{project}/reports/{report}", guarded(game["report"])),
        Route("/p/{project}/attachments/{upload}", guarded(game["attachment"])),
        Route("/p/{project}/analytics", guarded(game["analytics"])),
        Route("/health", health),
        Route("/ready", readiness),
        Route("/metrics", metrics),
        Route("/login", login, methods=["GET", "POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/p/{project}/errors", guarded(errors_inbox)),
        Route("/p/{project}/errors/{group}", guarded(error_group)),
        Route("/p/{project}/errors/{group}/status", guarded(group_action), methods=["POST"]),
        Route("/p/{project}/traces", guarded(traces)),
        Route("/p/{project}/traces/{trace}", guarded(trace)),
        Route("/p/{project}/settings", guarded(settings)),
        Route("/p/{project}/settings/tokens", guarded(create_token), methods=["POST"]),
        Route("/p/{project}/settings/tokens/{token}/revoke", guarded(revoke_token), methods=["POST"]),
        Route("/p/{project}/settings/applications", guarded(create_application), methods=["POST"]),
        Route("/p/{project}/settings/retention", guarded(set_retention), methods=["POST"]),
        Route("/p/{project}/settings/notify", guarded(add_target), methods=["POST"]),
        Route("/p/{project}/settings/notify/{target}/remove", guarded(remove_target), methods=["POST"]),
        Route("/p/{project}/settings/projects", guarded(create_project), methods=["POST"]),
        Route("/p/{project}/settings/project/name", guarded(rename_project), methods=["POST"]),
        Route("/p/{project}/settings/project/archive", guarded(archive_project), methods=["POST"]),
        Route("/p/{project}/settings/project/unarchive", guarded(unarchive_project), methods=["POST"]),
        *management_routes(manage, client_address=deps.client_address),
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    return Starlette(routes=routes, exception_handlers={HTTPException: not_found_or_error})


# A real argon2 hash of a random password: unknown user names cost the same verify.
_DUMMY_HASH = "$argon2id$v=19$m=65536,t=3,p=4$c29tZXNhbHRzb21lc2FsdA$2gDMTh0HQRnbj2vSdUVZmpTJ3I6Es3aWqGRcbMeZk9A"


def _safe_next(request: Request, given: object = None) -> str:
    """Where to go after signing in: a path on this console only (never another site)."""
    raw = str(given if given is not None else request.query_params.get("next", "/"))
    if not raw.startswith("/") or raw.startswith("//") or "\\" in raw or len(raw) > 512:
        return "/"
    return raw


def _shown_status(group: dict[str, Any]) -> str:
    if group.get("status") == "unresolved" and int(group.get("regressed") or 0):
        return "regressed"
    return str(group.get("status", ""))


def _tree_order(spans: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Spans depth-first (each parent followed by its children, by start), orphans last."""
    children: dict[str, list[dict[str, Any]]] = {}
    ids = {s["span_id"] for s in spans}
    roots = []
    for span in spans:
        parent = span["parent_span_id"]
        if parent and parent in ids:
            children.setdefault(parent, []).append(span)
        else:
            roots.append(span)
    ordered: list[dict[str, Any]] = []
    stack = sorted(roots, key=lambda s: int(s["start_ms"]), reverse=True)
    seen: set[str] = set()
    while stack:
        span = stack.pop()
        if span["span_id"] in seen:
            continue
        seen.add(span["span_id"])
        ordered.append(span)
        stack.extend(sorted(children.get(span["span_id"], []), key=lambda s: int(s["start_ms"]), reverse=True))
    return ordered
