"""`forgeline console`: the console on its own port (FORGELINE_CONSOLE_PORT, 8082).

It holds no warehouse connection: reads go through the processors' admin port (the one
process that owns chDB; FORGELINE_CONSOLE_ADMIN_URL, or the admin host and port), writes
through the bus (tenancy and console control topics, control.error_groups).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import sys
from collections.abc import AsyncIterator

import uvicorn
from starlette.applications import Starlette

from forgeline.blobstore.configured import blob_store_for
from forgeline.bus.factory import create_bus
from forgeline.bus.port import ADMIN_SEND_TIMEOUT_S, OutgoingRecord
from forgeline.clientip import ClientAddress
from forgeline.config import Settings
from forgeline.manage.ops import Management
from forgeline.manage.store import ConsoleStore
from forgeline.notify.crypto import SecretBox, load_key
from forgeline.notify.store import TargetAdmin
from forgeline.private_fs import open_private, private_dir
from forgeline.tenancy.store import TenancyAdmin
from services.admin import connect_host
from services.console.app import ConsoleDeps, console_app
from services.console.reader import AdminReader
from services.console.sessions import Signer
from services.exitcodes import EXIT_CANNOT_SERVE
from services.runfile import configured_admin_url

KEY_FILE = "console.key"
REFRESH_SECONDS = 1.0


def console_key(settings: Settings) -> bytes:
    """FORGELINE_CONSOLE_SECRET, else a key generated once into the data dir (0600)."""
    if settings.console_secret:
        return settings.console_secret.reveal().encode()
    data_dir = private_dir(settings.data_dir.resolve())
    path = data_dir / KEY_FILE
    if not path.exists():
        with (
            contextlib.suppress(FileExistsError),
            os.fdopen(open_private(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL), "w") as handle,
        ):
            handle.write(secrets.token_hex(32))
    return path.read_text().strip().encode()


def _cannot_add_targets(settings: Settings) -> str:
    """In distributed mode a notify key generated into this container's data dir is not the
    notifier's: a target added here would never decrypt. Embedded mode shares the data dir."""
    if settings.notify_key or settings.resolved_bus_url.startswith("embedded://"):
        return ""
    return "set FORGELINE_NOTIFY_KEY (the notifier's key) on the console to add notification targets here"


def console_admin_url(settings: Settings) -> str:
    return settings.console_admin_url or configured_admin_url(settings)


def build_console(settings: Settings) -> Starlette:
    """The console app; the bus clients start and stop with the app's lifespan."""
    bus = create_bus(settings.resolved_bus_url, settings.partitions)
    tenancy = TenancyAdmin(bus)
    store = ConsoleStore(bus)
    # The notify key (FORGELINE_NOTIFY_KEY, else the data dir's notify.key) encrypts target secrets.
    targets = TargetAdmin(bus, SecretBox(load_key(settings.data_dir.resolve(), settings.notify_key.reveal())))
    producer = bus.producer(send_timeout_s=ADMIN_SEND_TIMEOUT_S)
    reader = AdminReader(console_admin_url(settings), settings.admin_key.reveal())
    gateway_url = settings.public_url or f"http://{connect_host(settings.host)}:{settings.port}"
    # Bug-report attachments: the same store the gateway writes (its URL and credentials).
    blobs = blob_store_for(settings, settings.resolved_blob_store_url, gateway_url)

    async def send_control(record: OutgoingRecord) -> None:
        await producer.send(record)

    deps = ConsoleDeps(
        manage=Management(
            tenancy,
            store,
            targets,
            settings.notify_allowed_networks,
            _cannot_add_targets(settings),
            retention=reader.retention,
        ),
        reader=reader,
        send_control=send_control,
        signer=Signer(console_key(settings)),
        secure_cookies=settings.console_secure_cookies,
        gateway_url=gateway_url,
        blobs=blobs,
        # The sign-in throttle and the API's key limiter count the client behind a trusted proxy.
        client_address=ClientAddress(settings.trusted_proxies),
    )
    started = {"ready": False}
    deps.ready = lambda: started["ready"]
    app = console_app(deps)

    async def refresh() -> None:
        while True:
            await asyncio.sleep(REFRESH_SECONDS)
            await deps.manage.refresh()

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        await tenancy.__aenter__()
        await store.__aenter__()
        await targets.__aenter__()
        await producer.start()
        task = asyncio.create_task(refresh())
        started["ready"] = True
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await producer.stop()
            await targets.__aexit__()
            await store.__aexit__()
            await tenancy.__aexit__()
            await reader.close()

    app.router.lifespan_context = lifespan
    return app


def run_console(settings: Settings) -> None:
    app = build_console(settings)
    config = uvicorn.Config(
        app,
        host=settings.console_host,
        port=settings.console_port,
        log_config=None,
        access_log=False,
        proxy_headers=False,
        timeout_graceful_shutdown=10,
    )
    server = uvicorn.Server(config)
    with contextlib.suppress(KeyboardInterrupt):
        server.run()
    if not server.started:
        sys.exit(EXIT_CANNOT_SERVE)  # as uvicorn.run: the port was taken or the app failed to start
