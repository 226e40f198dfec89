"""The management API, ``/api/manage/v1/…`` on the console's port.

Authenticated with an admin key (``Authorization: Bearer fla_…``, `forgeline admin-keys
create`), scoped to every project or one. Every route calls the same ``Management``
operation as the CLI and the console's Settings page. Errors are JSON ``{"error": …}``:
400 bad input, 401 no or unknown key, 403 outside the key's scope, 404 nothing of that
name the key may see.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from forgeline.clientip import ClientAddress
from forgeline.manage.model import ALL_PROJECTS, AdminKey
from forgeline.manage.ops import PROJECT_RETENTION_KINDS, Actor, Management, Unavailable
from forgeline.notify.model import PROVIDERS, SUBJECTS, Target
from forgeline.tenancy.model import TOKEN_KINDS, Application, Project, Token
from services.console.sessions import LoginThrottle

PREFIX = "/api/manage/v1"
MAX_BODY_BYTES = 64 * 1024
AUTH_FAILURES_PER_WINDOW = 30
AUTH_FAILURE_WINDOW_S = 60.0

Handler = Callable[[Request, Actor], Awaitable[Response]]


def _json(doc: object, status: int = 200) -> Response:
    return Response(orjson.dumps(doc), status_code=status, media_type="application/json")


def _project(p: Project) -> dict[str, Any]:
    return {"id": p.id, "name": p.name, "archived": p.archived}


def _token(t: Token) -> dict[str, Any]:
    doc = asdict(t)
    doc.pop("hash")  # never, not even the hash
    return doc


def _application(a: Application) -> dict[str, Any]:
    return {"id": a.id, "name": a.name, "project_id": a.project_id}


def _target(t: Target) -> dict[str, Any]:
    # Never the secret; describe() leaves out a URL's query and credentials.
    return {
        "id": t.id,
        "project_id": t.project_id,
        "provider": t.provider,
        "name": t.name,
        "destination": t.describe(),
        "subjects": list(t.subjects),
        "rate": t.rate,
        "allow_private": t.allow_private,
        "created_at": t.created_at,
    }


def _admin_key(k: AdminKey) -> dict[str, Any]:
    return {
        "id": k.id,
        "prefix": k.display_prefix,
        "scope": None if k.scope == ALL_PROJECTS else k.scope,
        "name": k.name,
        "created_at": k.created_at,
        "revoked": k.revoked,
    }


async def _body(request: Request) -> dict[str, Any]:
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_BODY_BYTES:
            raise ValueError(f"body larger than {MAX_BODY_BYTES} bytes")
    if not raw.strip():
        return {}
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as err:
        raise ValueError(f"the body is not JSON: {err}") from err
    if not isinstance(doc, dict):
        raise ValueError("the body is a JSON object")
    return doc


def _text(doc: dict[str, Any], name: str, default: str | None = None) -> str:
    value = doc.get(name, default)
    if not isinstance(value, str):
        raise ValueError(f"{name!r} is a string" + ("" if default is not None else " and is required"))
    return value


def management_routes(
    manage: Management, failures: LoginThrottle | None = None, client_address: ClientAddress | None = None
) -> list[BaseRoute]:
    # Unknown keys per client address: a key is 32 random bytes, so this only sheds a guesser's load.
    failures = failures or LoginThrottle(limit=AUTH_FAILURES_PER_WINDOW, window_s=AUTH_FAILURE_WINDOW_S)
    # Behind a load balancer, the client is who FORGELINE_TRUSTED_PROXIES says (as at sign-in).
    clients = client_address or ClientAddress(())

    def authed(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            address = clients.of(request)
            wait = failures.retry_after(address, address)  # per address only
            if wait > 0:
                return Response(
                    orjson.dumps({"error": f"too many requests with unknown admin keys; retry in {int(wait) + 1} s"}),
                    status_code=429,
                    media_type="application/json",
                    headers={"Retry-After": str(int(wait) + 1)},
                )
            scheme, _, presented = request.headers.get("authorization", "").partition(" ")
            await manage.console.catch_up()
            actor = manage.actor_for_key(presented.strip()) if scheme.lower() == "bearer" else None
            if actor is None:
                failures.failed(address, address)
                return Response(
                    orjson.dumps(
                        {"error": "send an admin key: Authorization: Bearer fla_… (forgeline admin-keys create)"}
                    ),
                    status_code=401,
                    media_type="application/json",
                    headers={"WWW-Authenticate": "Bearer"},
                )
            try:
                return await handler(request, actor)
            except PermissionError as err:
                return _json({"error": str(err)}, 403)
            except LookupError as err:
                return _json({"error": str(err)}, 404)
            except ValueError as err:
                return _json({"error": str(err)}, 400)
            except Unavailable as err:
                return _json({"error": str(err)}, 503)

        return endpoint

    async def list_projects(request: Request, actor: Actor) -> Response:
        await manage.refresh()
        return _json({"projects": [_project(p) for p in manage.projects(actor)]})

    async def create_project(request: Request, actor: Actor) -> Response:
        body = await _body(request)
        return _json(_project(await manage.create_project(actor, _text(body, "name"))), 201)

    async def change_project(request: Request, actor: Actor) -> Response:
        body = await _body(request)
        return _json(_project(await manage.rename_project(actor, request.path_params["project"], _text(body, "name"))))

    async def archive(request: Request, actor: Actor) -> Response:
        body = await _body(request)
        project = await manage.set_archived(actor, request.path_params["project"], True, _text(body, "confirm"))
        return _json(_project(project))

    async def unarchive(request: Request, actor: Actor) -> Response:
        return _json(_project(await manage.set_archived(actor, request.path_params["project"], False)))

    async def list_tokens(request: Request, actor: Actor) -> Response:
        await manage.refresh()
        return _json({"tokens": [_token(t) for t in manage.tokens(actor, request.path_params["project"])]})

    async def create_token(request: Request, actor: Actor) -> Response:
        body = await _body(request)
        application = body.get("application")
        if application is not None and not isinstance(application, str):
            raise ValueError("'application' is a string (an application name or id)")
        token, secret = await manage.create_token(
            actor,
            _text(body, "kind"),
            request.path_params["project"],
            _text(body, "environment", "production"),
            application,
            _text(body, "name", ""),
        )
        # The token itself, this once: only its hash is stored.
        return _json({**_token(token), "token": secret}, 201)

    async def revoke_token(request: Request, actor: Actor) -> Response:
        return _json(_token(await manage.revoke_token(actor, request.path_params["token"])))

    async def get_retention(request: Request, actor: Actor) -> Response:
        await manage.refresh()
        return _json(await manage.retention(actor, request.path_params["project"]))

    async def put_retention(request: Request, actor: Actor) -> Response:
        body = await _body(request)
        days = body.get("days")
        if not isinstance(days, dict):
            raise ValueError('send {"days": {"errors": 30, "spans": "7d", …}}')
        await manage.refresh()
        return _json(await manage.set_retention(actor, request.path_params["project"], days))

    async def list_applications(request: Request, actor: Actor) -> Response:
        await manage.refresh()
        apps = manage.applications(actor, request.path_params["project"])
        return _json({"applications": [_application(a) for a in apps]})

    async def create_application(request: Request, actor: Actor) -> Response:
        body = await _body(request)
        app = await manage.create_application(actor, request.path_params["project"], _text(body, "name"))
        return _json(_application(app), 201)

    async def list_targets(request: Request, actor: Actor) -> Response:
        await manage.refresh()
        found = manage.notify_targets(actor, request.path_params["project"])
        return _json({"notify_targets": [_target(t) for t in found]})

    async def add_target(request: Request, actor: Actor) -> Response:
        body = await _body(request)
        settings = body.get("settings", {})
        if not isinstance(settings, dict) or not all(isinstance(v, str) for v in settings.values()):
            raise ValueError("'settings' is an object of strings (repo, url, base_url, …)")
        subjects = body.get("subjects", list(SUBJECTS))
        if not isinstance(subjects, list) or not all(isinstance(v, str) for v in subjects):
            raise ValueError("'subjects' is a list of strings")
        rate = body.get("rate", 0)
        allow_private = body.get("allow_private", False)
        if isinstance(rate, bool) or not isinstance(rate, int | float) or not isinstance(allow_private, bool):
            raise ValueError("'rate' is a number and 'allow_private' a boolean")
        target, generated = await manage.add_notify_target(
            actor,
            request.path_params["project"],
            _text(body, "provider"),
            _text(body, "name", ""),
            {str(k): v for k, v in settings.items()},
            _text(body, "secret", ""),
            tuple(subjects),
            float(rate),
            allow_private,
        )
        doc = _target(target)
        if generated:
            doc["signing_secret"] = generated  # shown once
        return _json(doc, 201)

    async def remove_target(request: Request, actor: Actor) -> Response:
        return _json(_target(await manage.remove_notify_target(actor, request.path_params["target"])))

    async def list_admin_keys(request: Request, actor: Actor) -> Response:
        return _json({"admin_keys": [_admin_key(k) for k in manage.admin_keys(actor)]})

    async def create_admin_key(request: Request, actor: Actor) -> Response:
        body = await _body(request)
        project = body.get("project")
        if project is not None and not isinstance(project, str):
            raise ValueError("'project' is a project name or id, or null for every project")
        key, secret = await manage.create_admin_key(actor, project, _text(body, "name", ""))
        return _json({**_admin_key(key), "key": secret}, 201)

    async def revoke_admin_key(request: Request, actor: Actor) -> Response:
        return _json(_admin_key(await manage.revoke_admin_key(actor, request.path_params["key"])))

    async def audit(request: Request, actor: Actor) -> Response:
        await manage.refresh()
        return _json({"entries": [asdict(e) for e in manage.audit(actor, 200)]})

    async def openapi(request: Request) -> Response:
        return _json(openapi_document())

    return [
        Route(f"{PREFIX}/openapi.json", openapi, methods=["GET"]),
        Route(f"{PREFIX}/projects", authed(list_projects), methods=["GET"]),
        Route(f"{PREFIX}/projects", authed(create_project), methods=["POST"]),
        Route(f"{PREFIX}/projects/{{project}}", authed(change_project), methods=["PATCH"]),
        Route(f"{PREFIX}/projects/{{project}}/archive", authed(archive), methods=["POST"]),
        Route(f"{PREFIX}/projects/{{project}}/unarchive", authed(unarchive), methods=["POST"]),
        Route(f"{PREFIX}/projects/{{project}}/tokens", authed(list_tokens), methods=["GET"]),
        Route(f"{PREFIX}/projects/{{project}}/tokens", authed(create_token), methods=["POST"]),
        Route(f"{PREFIX}/tokens/{{token}}/revoke", authed(revoke_token), methods=["POST"]),
        Route(f"{PREFIX}/projects/{{project}}/retention", authed(get_retention), methods=["GET"]),
        Route(f"{PREFIX}/projects/{{project}}/retention", authed(put_retention), methods=["PUT"]),
        Route(f"{PREFIX}/projects/{{project}}/applications", authed(list_applications), methods=["GET"]),
        Route(f"{PREFIX}/projects/{{project}}/applications", authed(create_application), methods=["POST"]),
        Route(f"{PREFIX}/projects/{{project}}/notify-targets", authed(list_targets), methods=["GET"]),
        Route(f"{PREFIX}/projects/{{project}}/notify-targets", authed(add_target), methods=["POST"]),
        Route(f"{PREFIX}/notify-targets/{{target}}/remove", authed(remove_target), methods=["POST"]),
        Route(f"{PREFIX}/admin-keys", authed(list_admin_keys), methods=["GET"]),
        Route(f"{PREFIX}/admin-keys", authed(create_admin_key), methods=["POST"]),
        Route(f"{PREFIX}/admin-keys/{{key}}/revoke", authed(revoke_admin_key), methods=["POST"]),
        Route(f"{PREFIX}/audit", authed(audit), methods=["GET"]),
    ]


def _op(summary: str, body: dict[str, Any] | None = None, created: bool = False) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "summary": summary,
        "security": [{"adminKey": []}],
        "responses": {
            "201" if created else "200": {"description": "done", "content": {"application/json": {}}},
            "400": {"description": "bad input"},
            "401": {"description": "no or unknown admin key"},
            "429": {"description": "too many requests with unknown keys from this address (Retry-After)"},
            "403": {"description": "outside the key's scope"},
            "404": {"description": "nothing of that name the key may see"},
        },
    }
    if body is not None:
        doc["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": {"type": "object", **body}}},
        }
    return doc


def _retention_op(summary: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    doc = _op(summary, body)
    doc["responses"]["503"] = {"description": "the processors' admin port (which keeps retention) is not reachable"}
    return doc


def _path_param(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


def openapi_document() -> dict[str, Any]:
    """The management API's OpenAPI 3.1 document (served at /api/manage/v1/openapi.json)."""
    string = {"type": "string"}
    project = [_path_param("project")]
    return {
        "openapi": "3.1.0",
        "info": {"title": "Forgeline management API", "version": "1"},
        "components": {"securitySchemes": {"adminKey": {"type": "http", "scheme": "bearer"}}},
        "paths": {
            f"{PREFIX}/projects": {
                "get": _op("List the projects the key reaches"),
                "post": _op(
                    "Create a project (all-projects key)",
                    {"properties": {"name": string}, "required": ["name"]},
                    created=True,
                ),
            },
            f"{PREFIX}/projects/{{project}}": {
                "parameters": project,
                "patch": _op("Rename a project", {"properties": {"name": string}, "required": ["name"]}),
            },
            f"{PREFIX}/projects/{{project}}/archive": {
                "parameters": project,
                "post": _op(
                    "Archive a project (its tokens are refused); confirm with its name",
                    {"properties": {"confirm": string}, "required": ["confirm"]},
                ),
            },
            f"{PREFIX}/projects/{{project}}/unarchive": {"parameters": project, "post": _op("Unarchive a project")},
            f"{PREFIX}/projects/{{project}}/tokens": {
                "parameters": project,
                "get": _op("List a project's tokens (never their values)"),
                "post": _op(
                    "Create a token; the response holds it once",
                    {
                        "properties": {
                            "kind": {"type": "string", "enum": list(TOKEN_KINDS)},
                            "environment": string,
                            "application": string,
                            "name": string,
                        },
                        "required": ["kind"],
                    },
                    created=True,
                ),
            },
            f"{PREFIX}/tokens/{{token}}/revoke": {"parameters": [_path_param("token")], "post": _op("Revoke a token")},
            f"{PREFIX}/projects/{{project}}/retention": {
                "parameters": project,
                "get": _retention_op("A project's retention: days per kind, and which are its own (not defaults)"),
                "put": _retention_op(
                    "Set some kinds' retention (days, or text like 30d, 2w, 1y); the others keep theirs",
                    {
                        "properties": {
                            "days": {
                                "type": "object",
                                "propertyNames": {"enum": list(PROJECT_RETENTION_KINDS)},
                                "additionalProperties": {"type": ["integer", "string"]},
                            }
                        },
                        "required": ["days"],
                    },
                ),
            },
            f"{PREFIX}/projects/{{project}}/applications": {
                "parameters": project,
                "get": _op("List a project's MessagePack applications"),
                "post": _op(
                    "Create an application", {"properties": {"name": string}, "required": ["name"]}, created=True
                ),
            },
            f"{PREFIX}/projects/{{project}}/notify-targets": {
                "parameters": project,
                "get": _op("List a project's notification targets (never their secrets)"),
                "post": _op(
                    "Add a notification target (its destination must pass the egress rules)",
                    {
                        "properties": {
                            "provider": {"type": "string", "enum": list(PROVIDERS)},
                            "name": string,
                            "settings": {"type": "object", "additionalProperties": string},
                            "secret": string,
                            "subjects": {"type": "array", "items": {"type": "string", "enum": list(SUBJECTS)}},
                            "rate": {"type": "number", "minimum": 0},
                            "allow_private": {"type": "boolean"},
                        },
                        "required": ["provider"],
                    },
                    created=True,
                ),
            },
            f"{PREFIX}/notify-targets/{{target}}/remove": {
                "parameters": [_path_param("target")],
                "post": _op("Remove a notification target"),
            },
            f"{PREFIX}/admin-keys": {
                "get": _op("List admin keys (never their values)"),
                "post": _op(
                    "Create an admin key for every project (project null) or one; the response holds it once",
                    {"properties": {"project": {"type": ["string", "null"]}, "name": string}},
                    created=True,
                ),
            },
            f"{PREFIX}/admin-keys/{{key}}/revoke": {
                "parameters": [_path_param("key")],
                "post": _op("Revoke an admin key"),
            },
            f"{PREFIX}/audit": {"get": _op("The latest management changes: who, when, what")},
        },
    }
