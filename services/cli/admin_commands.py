"""CLI commands that administer: tokens, projects, applications, migrations, SQL."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

import httpx

from forgeline.bus.factory import create_bus
from forgeline.config import Settings
from forgeline.manage.ops import Management
from forgeline.manage.store import ConsoleStore
from forgeline.tenancy.model import TOKEN_KINDS, Project, TenancyTable, TokenKind
from forgeline.tenancy.store import TenancyAdmin
from services.cli.lifecycle_commands import add_retention_command


def add_tenancy_commands(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    tokens = sub.add_parser("tokens", help="create, list and revoke API tokens")
    tsub = tokens.add_subparsers(dest="action", required=True)
    create = tsub.add_parser("create", parents=[common], help="create a token (shown once)")
    create.add_argument("--kind", choices=TOKEN_KINDS, default="logister")
    create.add_argument("--project", default="default", help="project name or id")
    create.add_argument("--environment", default="production")
    create.add_argument(
        "--application", help="name or id of an application of --project (required for MessagePack tokens)"
    )
    create.add_argument("--name", default="", help="a label for listings")
    tsub.add_parser("list", parents=[common], help="list tokens (never their values)")
    revoke = tsub.add_parser("revoke", parents=[common], help="revoke a token by id (or unique id prefix)")
    revoke.add_argument("token_id")

    projects = sub.add_parser("projects", help="list, create, archive and unarchive projects")
    psub = projects.add_subparsers(dest="action", required=True)
    psub.add_parser("list", parents=[common])
    pcreate = psub.add_parser("create", parents=[common])
    pcreate.add_argument("name")
    archive = psub.add_parser(
        "archive", parents=[common], help="archive a project: its tokens are refused until it is unarchived"
    )
    archive.add_argument("project")
    add_retention_command(psub, common)
    archive.add_argument("--yes", action="store_true", help="do not ask for confirmation (scripts)")
    unarchive = psub.add_parser("unarchive", parents=[common], help="bring an archived project's tokens back")
    unarchive.add_argument("project")
    rename = psub.add_parser("rename", parents=[common], help="give a project a new name (its id stays)")
    rename.add_argument("project")
    rename.add_argument("name")

    applications = sub.add_parser("applications", help="create and list a project's game applications (MessagePack)")
    asub = applications.add_subparsers(dest="action", required=True)
    acreate = asub.add_parser("create", parents=[common], help="create an application (its name is the app_name)")
    acreate.add_argument("name", help="unique within the project; the app_name that POST /api/models expects")
    acreate.add_argument("--project", default="default", help="project name or id")
    alist = asub.add_parser("list", parents=[common], help="list applications: app_id and app_name")
    alist.add_argument("--project", help="only this project's (name or id)")


def tenancy_command(settings: Settings, args: argparse.Namespace) -> int:
    try:
        return asyncio.run(_tenancy(settings, args))
    except (LookupError, ValueError, PermissionError) as err:
        print(f"forgeline: {err}", file=sys.stderr)
        return 1


def _project(table: TenancyTable, ref: str) -> Project:
    project = table.project_by_name_or_id(ref)
    if project is None:
        raise LookupError(f"no project {ref!r} (is this the right --data-dir?)")
    return project


def _application_of(table: TenancyTable, project: Project, ref: str | None, kind: TokenKind) -> str | None:
    """The id of the project's application ``ref`` a token of ``kind`` is bound to (None: no binding)."""
    if kind not in ("msgpack_public", "msgpack_secret"):
        if ref:
            raise ValueError(f"--application is for MessagePack tokens only, not {kind}")
        return None
    names = ", ".join(a.name for a in table.applications_of(project.id)) or "none yet"
    if not ref:
        raise ValueError(f"a {kind} token needs --application (applications of {project.name}: {names})")
    application = table.application_in_project(project.id, ref)
    if application is None:
        elsewhere = [a for a in table.applications.values() if ref in (a.id, a.name)]
        if elsewhere:
            raise ValueError(
                f"application {ref!r} belongs to another project, not {project.name}: a token can only be "
                f"bound to an application of its own project (applications of {project.name}: {names})"
            )
        raise LookupError(f"no application {ref!r} in project {project.name} (its applications: {names})")
    return application.id


def _confirmed(project: Project) -> bool:
    """Ask for the project's name on a terminal; without one, only ``--yes`` archives."""
    if not sys.stdin.isatty():
        print(
            f"forgeline: archiving {project.name} refuses all its tokens; pass --yes to confirm "
            "(no terminal to ask on)",
            file=sys.stderr,
        )
        return False
    prompt = f"archiving {project.name} refuses all its tokens; type its name to confirm: "
    try:
        return input(prompt).strip() == project.name
    except EOFError:
        return False


async def _tenancy(settings: Settings, args: argparse.Namespace) -> int:
    bus = create_bus(settings.resolved_bus_url, settings.partitions)
    # Changes go through the management operations (the API's and the console's too), as
    # the actor cli:<login>, so each one is in the audit log.
    from forgeline.manage.ops import cli_actor

    actor = cli_actor()
    async with TenancyAdmin(bus) as admin, ConsoleStore(bus) as console:
        table = admin.table
        manage = Management(admin, console)
        if args.command == "tokens" and args.action == "create":
            project = _project(table, args.project)
            kind: TokenKind = args.kind
            application_id = _application_of(table, project, args.application, kind)
            token, secret = await manage.create_token(
                actor, kind, project.id, args.environment, application_id, args.name
            )
            print(secret)
            print(
                f"id {token.id}  kind {token.kind}  project {project.name}  environment {token.environment}",
                file=sys.stderr,
            )
            print("this token is shown once; only its hash is stored", file=sys.stderr)
        elif args.command == "tokens" and args.action == "list":
            print(f"{'id':36}  {'kind':15}  {'prefix':12}  {'project':20}  {'environment':12}  {'state':8}  created")
            for token in sorted(table.tokens.values(), key=lambda t: t.created_at):
                owner = table.projects.get(token.project_id)
                state = "revoked" if token.revoked else ("archived" if owner and owner.archived else "active")
                pname = owner.name if owner else token.project_id
                print(
                    f"{token.id:36}  {token.kind:15}  {token.display_prefix:12}  {pname:20}  "
                    f"{token.environment:12}  {state:8}  {token.created_at}"
                )
        elif args.command == "tokens" and args.action == "revoke":
            revoked = await manage.revoke_token(actor, args.token_id)
            print(f"revoked {revoked.id}")
        elif args.command == "projects" and args.action == "list":
            for project in table.projects.values():
                print(f"{project.id}  {project.name}  {'archived' if project.archived else 'active'}")
        elif args.command == "projects" and args.action == "create":
            project = await manage.create_project(actor, args.name)
            print(project.id)
        elif args.command == "projects" and args.action == "archive":
            target = _project(table, args.project)
            if not args.yes and not _confirmed(target):
                print("forgeline: not archived", file=sys.stderr)
                return 1
            project = await manage.set_archived(actor, target.id, True)
            print(
                f"archived {project.name} ({project.id}); its tokens are refused from now on "
                f"(`forgeline projects unarchive {project.name}` brings them back)"
            )
        elif args.command == "projects" and args.action == "unarchive":
            project = await manage.set_archived(actor, args.project, False)
            print(f"unarchived {project.name} ({project.id}); its tokens that are not revoked work again")
        elif args.command == "projects" and args.action == "rename":
            project = await manage.rename_project(actor, args.project, args.name)
            print(f"renamed {project.id} to {project.name}")
        elif args.command == "applications" and args.action == "create":
            project = _project(table, args.project)
            app = await manage.create_application(actor, project.id, args.name)
            print(app.id)
            print(
                f"app_id {app.id}  app_name {app.name}  project {project.name}\n"
                f"tokens: forgeline tokens create --kind msgpack_public --project {project.name} "
                f"--application {app.name}",
                file=sys.stderr,
            )
        elif args.command == "applications" and args.action == "list":
            projects = [_project(table, args.project)] if args.project else list(table.projects.values())
            # app_id: what events carry; app_name: what POST /api/models expects.
            print(f"{'app_id':36}  {'project':20}  app_name")
            for project in projects:
                for app in table.applications_of(project.id):
                    print(f"{app.id:36}  {project.name:20}  {app.name}")
    return 0


def migrate_command(settings: Settings) -> int:
    from forgeline.warehouse.client import ClickHouseWarehouse
    from forgeline.warehouse.migrations import migrate

    warehouse = ClickHouseWarehouse(settings.resolved_warehouse_dsn)
    try:
        applied = migrate(warehouse)
    finally:
        warehouse.close()
    print(f"applied: {applied or 'nothing (up to date)'}")
    return 0


def bootstrap_command(settings: Settings) -> int:
    """What `forgeline up` does on its first start, for deployments that never run `up`."""
    from forgeline.private_fs import private_dir
    from services.supervisor.bootstrap import bootstrap_tenancy

    private_dir(settings.data_dir)  # 0700: it will hold the tokens, the bus and the keys
    bus = create_bus(settings.resolved_bus_url, settings.partitions)
    written = asyncio.run(bootstrap_tenancy(bus, settings.data_dir))
    if written is None:
        print("an organisation exists already: nothing to do (create more with `forgeline projects|tokens`)")
    else:
        print(f"default organisation, project and tokens created; the tokens are in {written} (mode 0600)")
    return 0


def sql_command(settings: Settings, query: str, fmt: str, admin_url: str | None, output: str | None = None) -> int:
    from forgeline.warehouse.guard import is_binary_format
    from services.runfile import admin_url as resolve_admin_url
    from services.runfile import post_query

    if is_binary_format(fmt) and not output:
        print(f"forgeline: {fmt} is a binary format: write it to a file with --output FILE", file=sys.stderr)
        return 2

    admin_url = resolve_admin_url(settings, admin_url)
    try:
        response = post_query(settings, admin_url, query, fmt)
    except httpx.TransportError as err:
        print(
            f"forgeline: cannot reach the processors at {admin_url} ({err}); is `forgeline up` running?",
            file=sys.stderr,
        )
        return 1
    if response.status_code != 200:
        try:
            doc = response.json()
            message, code = str(doc.get("error", response.text)), str(doc.get("code", ""))
        except (ValueError, AttributeError):
            message, code = response.text, ""
        # A query that does not parse and one refused here need different fixes: say which.
        label = {"syntax_error": "syntax error: ", "refused": "refused: "}.get(code, "")
        print(f"forgeline: {label}{message}", file=sys.stderr)
        return 1
    if output:
        Path(output).write_bytes(response.content)
        print(f"wrote {len(response.content):,} bytes to {output}", file=sys.stderr)
    else:
        sys.stdout.write(response.text)
    return 0
