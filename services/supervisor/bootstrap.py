"""First start: a default organisation, project, environment, application and tokens.

The tokens are written once to ``<data-dir>/bootstrap-tokens.json`` (mode 0600); only
their hashes go to the control topic. Later starts find the organisation and do nothing.
"""

from __future__ import annotations

import os
from pathlib import Path

import orjson

from forgeline.bus.port import Bus
from forgeline.tenancy.store import TenancyAdmin

BOOTSTRAP_FILE = "bootstrap-tokens.json"


async def bootstrap_tenancy(bus: Bus, data_dir: Path) -> Path | None:
    """Create the defaults if the tenancy is empty; returns the tokens file if written now."""
    async with TenancyAdmin(bus) as admin:
        if admin.table.organisations:
            return None
        org = await admin.create_organisation("default")
        project = await admin.create_project(org.id, "default")
        await admin.create_environment(project.id, "production")
        app = await admin.create_application(project.id, "default-game")
        _, forge = await admin.create_token("forge", project.id, "production", name="bootstrap")
        _, logister = await admin.create_token("logister", project.id, "production", name="bootstrap")
        _, public = await admin.create_token("msgpack_public", project.id, "production", app.id, "bootstrap")
        _, secret = await admin.create_token("msgpack_secret", project.id, "production", app.id, "bootstrap")
    path = data_dir / BOOTSTRAP_FILE
    doc = {
        "organisation_id": org.id,
        "project_id": project.id,
        "environment": "production",
        "forge_token": forge,
        "logister_token": logister,
        "msgpack_public_token": public,
        "msgpack_secret_key": secret,
        "msgpack_app_id": app.id,
        "msgpack_app_name": app.name,  # the app_name POST /api/models expects
    }
    # Created with 0600 from the start: the secret never sits in a world-readable file.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n")
    os.chmod(path, 0o600)
    return path
