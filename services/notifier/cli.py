"""`forgeline notify add|list|remove|test`: a project's notification targets.

Targets are written to the control.notify topic, so the change reaches a running notifier
(`forgeline up` included) within a batch. The secret is encrypted before it is written and
is never printed back, except a generated webhook signing secret, shown once at `add`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import sys
import uuid

import httpx

from forgeline.bus.factory import create_bus
from forgeline.config import Settings
from forgeline.notify.crypto import SecretBox, SecretError, load_key
from forgeline.notify.egress import BlockedDestination, EgressPolicy, check_url, guarded_client, parse_networks
from forgeline.notify.model import (
    PROVIDERS,
    SUBJECTS,
    Provider,
    destination_urls,
    parse_subjects,
    validate_secret,
    validate_settings,
)
from forgeline.notify.store import TargetAdmin
from forgeline.tenancy.store import TenancyAdmin
from services.notifier.main import NotifyPolicy, attempt
from services.notifier.subjects import delivery_id, sample_notification

# CLI option → settings field, per provider (model.PROVIDER_SPECS says which are required).
_SETTING_OPTIONS = (
    "repo",
    "gitlab_project",
    "jira_project",
    "issue_type",
    "email",
    "api_version",
    "base_url",
    "url",
    "labels",
)


def add_notify_commands(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    notify = sub.add_parser(
        "notify", help="where a project's notifications go (GitHub, GitLab, Jira, Discord, webhook)"
    )
    nsub = notify.add_subparsers(dest="action", required=True)
    add = nsub.add_parser("add", parents=[common], help="add a target (its secret is stored encrypted)")
    add.add_argument("provider", choices=PROVIDERS)
    add.add_argument("--project", default="default", help="Forgeline project name or id")
    add.add_argument("--name", default="", help="a label for listings (default: the provider)")
    add.add_argument("--on", default=",".join(SUBJECTS), help=f"what to send, comma-separated: {', '.join(SUBJECTS)}")
    add.add_argument("--rate", type=float, default=0.0, help="max requests/s to this target (default: per provider)")
    add.add_argument("--repo", help="github: OWNER/NAME")
    add.add_argument("--gitlab-project", help="gitlab: numeric project id or group/project path")
    add.add_argument("--jira-project", help="jira: project key, e.g. GAME")
    add.add_argument("--issue-type", help="jira: issue type name (default Bug)")
    add.add_argument("--email", help="jira cloud: account email (basic auth with the API token)")
    add.add_argument("--api-version", help="jira: REST API version 2 (default) or 3")
    add.add_argument("--base-url", help="github/gitlab: API base for self-hosted; jira: site URL")
    add.add_argument("--url", help="webhook: the endpoint URL")
    add.add_argument("--labels", help="github/gitlab/jira: labels for created issues, comma-separated")
    add.add_argument(
        "--secret",
        help="token (github/gitlab/jira), webhook URL (discord) or signing secret (webhook; generated if omitted)",
    )
    add.add_argument("--secret-env", help="read the secret from this environment variable instead (keeps it out of ps)")
    add.add_argument(
        "--allow-private",
        action="store_true",
        help="let this target reach loopback and private networks (10/8, 172.16/12, 192.168/16, fc00::/7, "
        "100.64/10); refused by default",
    )
    nsub.add_parser("list", parents=[common], help="list targets (never their secrets)")
    remove = nsub.add_parser("remove", parents=[common], help="remove a target by id, unique id prefix or name")
    remove.add_argument("target")
    test = nsub.add_parser("test", parents=[common], help="send a test notification to a target now")
    test.add_argument("target")


def notify_command(settings: Settings, args: argparse.Namespace) -> int:
    try:
        return asyncio.run(_notify(settings, args))
    except (LookupError, ValueError) as err:  # SecretError is a ValueError
        print(f"forgeline: {err}", file=sys.stderr)
        return 1


def _secret(args: argparse.Namespace, provider: str) -> tuple[str, bool]:
    """The secret from --secret / --secret-env; a webhook gets a generated one. (secret, generated)"""
    if args.secret_env:
        value = os.environ.get(args.secret_env, "")
        if not value:
            raise ValueError(f"--secret-env {args.secret_env}: that environment variable is empty or unset")
        return value, False
    if args.secret:
        return str(args.secret), False
    if provider == "webhook":
        return "whsec_" + secrets.token_urlsafe(32), True
    return "", False


async def _notify(settings: Settings, args: argparse.Namespace) -> int:
    data_dir = settings.data_dir.resolve()
    bus = create_bus(settings.resolved_bus_url, settings.partitions)
    box = SecretBox(load_key(data_dir, settings.notify_key.reveal()))
    from forgeline.manage.ops import Management, cli_actor
    from forgeline.manage.store import ConsoleStore

    actor = cli_actor()
    async with TenancyAdmin(bus) as tenancy, TargetAdmin(bus, box) as admin, ConsoleStore(bus) as console:
        # Adding and removing go through the management operations: audited like the API's.
        manage = Management(tenancy, console, admin, settings.notify_allowed_networks)
        if args.action == "add":
            project = tenancy.table.project_by_name_or_id(args.project)
            if project is None:
                raise LookupError(f"no project {args.project!r} (is this the right --data-dir?)")
            provider: Provider = args.provider
            raw = {name: getattr(args, name) for name in _SETTING_OPTIONS if getattr(args, name)}
            target_settings = validate_settings(provider, raw)
            secret, generated = _secret(args, provider)
            validate_secret(provider, secret)
            if args.rate < 0:
                raise ValueError("--rate must be positive")
            subjects = parse_subjects(args.on)
            await _check_destinations(settings, provider, target_settings, secret, args.allow_private)
            target, _generated = await manage.add_notify_target(
                actor,
                project.id,
                provider,
                args.name or provider,
                target_settings,
                secret,
                subjects,
                args.rate,
                allow_private=args.allow_private,
            )
            print(target.id)
            print(
                f"{provider} → {target.describe()}  project {project.name}  on {','.join(target.subjects)}",
                file=sys.stderr,
            )
            if generated:
                print(f"signing secret (shown once, verify X-Forgeline-Signature with it): {secret}", file=sys.stderr)
        elif args.action == "list":
            print(f"{'id':36}  {'provider':8}  {'name':16}  {'project':16}  {'on':40}  destination")
            for t in sorted(admin.table.targets.values(), key=lambda t: t.created_at):
                project = tenancy.table.projects.get(t.project_id)
                pname = project.name if project else t.project_id
                on = "all" if set(t.subjects) == set(SUBJECTS) else ",".join(t.subjects)
                print(f"{t.id:36}  {t.provider:8}  {t.name:16}  {pname:16}  {on:40}  {t.describe()}")
        elif args.action == "remove":
            target = await manage.remove_notify_target(actor, args.target)
            print(f"removed {target.id} ({target.provider} {target.name})")
        elif args.action == "test":
            return await _test(settings, admin, box, args.target)
    return 0


async def _check_destinations(
    settings: Settings, provider: str, target_settings: dict[str, str], secret: str, allow_private: bool
) -> None:
    """Refuse a target whose URL is (or resolves to) an address it may not reach; the notifier
    checks again on every connection, so a name that does not resolve now only warns."""
    policy = EgressPolicy(allow_private, parse_networks(settings.notify_allowed_networks))
    for url in destination_urls(provider, target_settings, secret):
        what = (
            "the Discord webhook URL" if provider == "discord" else "--url" if provider == "webhook" else "--base-url"
        )
        try:
            warning = await check_url(url, policy)
        except BlockedDestination as err:
            raise BlockedDestination(f"{what}: {err}", err.category) from err
        if warning:
            print(f"forgeline: warning: {what}: {warning}", file=sys.stderr)


async def _test(settings: Settings, admin: TargetAdmin, box: SecretBox, ref: str) -> int:
    target = admin.table.find(ref)
    try:
        secret = box.decrypt(target.secret)
    except SecretError as err:
        raise ValueError(str(err)) from err
    n = sample_notification(target.project_id, uuid.uuid4().hex)
    did = delivery_id(n.project_id, n.subject_id, target.id)
    policy = NotifyPolicy(timeout_s=settings.notify_timeout_seconds)
    egress = EgressPolicy(target.allow_private, parse_networks(settings.notify_allowed_networks))
    async with guarded_client(egress, httpx.Timeout(policy.timeout_s), httpx.Limits()) as client:
        outcome = await attempt(client, target, secret, n, did, None)
    if outcome.kind == "ok":
        print(f"sent a test notification to {target.provider} {target.name} ({target.describe()})")
        return 0
    reason = f"{outcome.reason}: {outcome.detail}" if outcome.detail else outcome.reason
    print(f"forgeline: {target.provider} {target.name}: test failed ({reason})", file=sys.stderr)
    return 1
