"""`forgeline console`, `forgeline admin-keys …` and `forgeline users …`.

They call the same ``forgeline.manage.ops.Management`` operations as the management API
and the console, as the actor ``cli:<login name>``: each change is in the audit log.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from forgeline.bus.factory import create_bus
from forgeline.config import Settings
from forgeline.manage.model import ALL_PROJECTS
from forgeline.manage.ops import Management, cli_actor
from forgeline.manage.store import ConsoleStore
from forgeline.tenancy.store import TenancyAdmin


def add_manage_commands(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
    serving: argparse.ArgumentParser,
) -> None:
    sub.add_parser("console", parents=[common, serving], help="run the console (web UI and management API) alone")
    keys = sub.add_parser("admin-keys", help="keys for the management API (/api/manage/v1)")
    ksub = keys.add_subparsers(dest="action", required=True)
    kcreate = ksub.add_parser("create", parents=[common], help="create a key (shown once; only its hash is kept)")
    kcreate.add_argument("--project", help="scope the key to this project (name or id); default: every project")
    kcreate.add_argument("--name", default="", help="a label for listings")
    ksub.add_parser("list", parents=[common], help="list keys (never their values)")
    krevoke = ksub.add_parser("revoke", parents=[common], help="revoke a key by id (or unique id prefix)")
    krevoke.add_argument("key_id")

    users = sub.add_parser("users", help="console users")
    usub = users.add_subparsers(dest="action", required=True)
    ucreate = usub.add_parser("create", parents=[common], help="create a user; prints a random password once")
    ucreate.add_argument("username")
    ucreate.add_argument(
        "--project", action="append", help="a project this user may see (repeat); default: every project"
    )
    usub.add_parser("list", parents=[common], help="list users")
    for action, what in (("disable", "can no longer sign in; open sessions end"), ("enable", "may sign in again")):
        change = usub.add_parser(action, parents=[common], help=f"{action} a user: {what}")
        change.add_argument("username")


def manage_command(settings: Settings, args: argparse.Namespace) -> int:
    try:
        return asyncio.run(_manage(settings, args))
    except (LookupError, ValueError, PermissionError) as err:
        print(f"forgeline: {err}", file=sys.stderr)
        return 1


async def _manage(settings: Settings, args: argparse.Namespace) -> int:
    bus = create_bus(settings.resolved_bus_url, settings.partitions)
    actor = cli_actor()
    async with TenancyAdmin(bus) as tenancy, ConsoleStore(bus) as store:
        manage = Management(tenancy, store)
        if args.command == "admin-keys" and args.action == "create":
            key, secret = await manage.create_admin_key(actor, args.project, args.name)
            print(secret)
            scope = "every project" if key.scope == ALL_PROJECTS else f"project {args.project}"
            print(f"id {key.id}  scope {scope}; shown once, only its hash is stored", file=sys.stderr)
        elif args.command == "admin-keys" and args.action == "list":
            print(f"{'id':36}  {'prefix':12}  {'scope':36}  {'state':8}  created  name")
            for key in manage.admin_keys(actor):
                state = "revoked" if key.revoked else "active"
                print(f"{key.id:36}  {key.display_prefix:12}  {key.scope:36}  {state:8}  {key.created_at}  {key.name}")
        elif args.command == "admin-keys" and args.action == "revoke":
            revoked = await manage.revoke_admin_key(actor, args.key_id)
            print(f"revoked {revoked.id}")
        elif args.command == "users" and args.action == "create":
            projects = tuple(args.project) if args.project else (ALL_PROJECTS,)
            user, password = await manage.create_user(actor, args.username, projects)
            print(password)
            print(f"user {user.username} created; the password is shown once", file=sys.stderr)
        elif args.command == "users" and args.action == "list":
            for user in sorted(store.table.users.values(), key=lambda u: u.created_at):
                state = "disabled" if user.disabled else "active"
                print(f"{user.id}  {user.username}  {state}  projects {','.join(user.projects)}  {user.created_at}")
        elif args.command == "users" and args.action in ("disable", "enable"):
            user = await manage.set_user_disabled(actor, args.username, args.action == "disable")
            print(f"{args.action}d {user.username}")
    return 0
