"""CLI commands that administer: tokens, projects, migrations, SQL."""

from __future__ import annotations

import argparse
import asyncio
import sys

import httpx

from forgeline.bus.factory import create_bus
from forgeline.config import Settings
from forgeline.tenancy.model import TOKEN_KINDS, TokenKind
from forgeline.tenancy.store import TenancyAdmin


def add_tenancy_commands(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    tokens = sub.add_parser("tokens", help="create, list and revoke API tokens")
    tsub = tokens.add_subparsers(dest="action", required=True)
    create = tsub.add_parser("create", parents=[common], help="create a token (shown once)")
    create.add_argument("--kind", choices=TOKEN_KINDS, default="logister")
    create.add_argument("--project", default="default", help="project name or id")
    create.add_argument("--environment", default="production")
    create.add_argument("--application", help="application name or id (MessagePack tokens)")
    create.add_argument("--name", default="", help="a label for listings")
    tsub.add_parser("list", parents=[common], help="list tokens (never their values)")
    revoke = tsub.add_parser("revoke", parents=[common], help="revoke a token by id (or unique id prefix)")
    revoke.add_argument("token_id")

    projects = sub.add_parser("projects", help="list, create and archive projects")
    psub = projects.add_subparsers(dest="action", required=True)
    psub.add_parser("list", parents=[common])
    pcreate = psub.add_parser("create", parents=[common])
    pcreate.add_argument("name")
    archive = psub.add_parser("archive", parents=[common], help="archive a project: its tokens stop working")
    archive.add_argument("project")


def tenancy_command(settings: Settings, args: argparse.Namespace) -> int:
    try:
        return asyncio.run(_tenancy(settings, args))
    except LookupError as err:
        print(f"forgeline: {err}", file=sys.stderr)
        return 1


async def _tenancy(settings: Settings, args: argparse.Namespace) -> int:
    bus = create_bus(settings.resolved_bus_url, settings.partitions)
    async with TenancyAdmin(bus) as admin:
        table = admin.table
        if args.command == "tokens" and args.action == "create":
            project = table.project_by_name_or_id(args.project)
            if project is None:
                raise LookupError(f"no project {args.project!r} (is this the right --data-dir?)")
            application_id = None
            if args.application:
                apps = [a for a in table.applications.values() if args.application in (a.id, a.name)]
                if len(apps) != 1:
                    raise LookupError(f"no application {args.application!r}")
                application_id = apps[0].id
            kind: TokenKind = args.kind
            token, secret = await admin.create_token(kind, project.id, args.environment, application_id, args.name)
            print(secret)
            print(
                f"id {token.id}  kind {token.kind}  project {project.name}  environment {token.environment}",
                file=sys.stderr,
            )
            print("this token is shown once; only its hash is stored", file=sys.stderr)
        elif args.command == "tokens" and args.action == "list":
            print(f"{'id':36}  {'kind':15}  {'prefix':12}  {'project':20}  {'environment':12}  {'state':8}  created")
            for token in sorted(table.tokens.values(), key=lambda t: t.created_at):
                project = table.projects.get(token.project_id)
                state = "revoked" if token.revoked else ("archived" if project and project.archived else "active")
                pname = project.name if project else token.project_id
                print(
                    f"{token.id:36}  {token.kind:15}  {token.display_prefix:12}  {pname:20}  "
                    f"{token.environment:12}  {state:8}  {token.created_at}"
                )
        elif args.command == "tokens" and args.action == "revoke":
            revoked = await admin.revoke_token(args.token_id)
            print(f"revoked {revoked.id}")
        elif args.command == "projects" and args.action == "list":
            for project in table.projects.values():
                print(f"{project.id}  {project.name}  {'archived' if project.archived else 'active'}")
        elif args.command == "projects" and args.action == "create":
            org = next(iter(table.organisations.values()), None)
            if org is None:
                raise LookupError("no organisation yet: run `forgeline up` once first")
            project = await admin.create_project(org.id, args.name)
            await admin.create_environment(project.id, "production")
            print(project.id)
        elif args.command == "projects" and args.action == "archive":
            project = await admin.archive_project(args.project)
            print(f"archived {project.name} ({project.id}); its tokens are refused from now on")
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


def sql_command(settings: Settings, query: str, fmt: str, admin_url: str | None) -> int:
    from services.supervisor.up import read_run_file

    if admin_url is None:
        run = read_run_file(settings.data_dir.resolve())
        admin_url = str(run["admin_url"]) if run else f"http://{settings.host}:{settings.admin_port}"
    try:
        response = httpx.post(f"{admin_url}/query", json={"sql": query, "format": fmt}, timeout=60)
    except httpx.TransportError as err:
        print(
            f"forgeline: cannot reach the processors at {admin_url} ({err}); is `forgeline up` running?",
            file=sys.stderr,
        )
        return 1
    if response.status_code != 200:
        try:
            message = response.json().get("error", response.text)
        except ValueError:
            message = response.text
        print(f"forgeline: {message}", file=sys.stderr)
        return 1
    sys.stdout.write(response.text)
    return 0
