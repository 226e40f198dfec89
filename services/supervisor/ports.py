"""What `forgeline up` checks and prints before it starts anything: free ports, a first request."""

from __future__ import annotations

import errno
import shlex
import socket
from pathlib import Path

from forgeline.config import Settings
from services.admin import connect_host

# (what listens, its flag and variable) for every port `up` opens.
_PORTS = (
    ("gateway", "host", "port", "--port / FORGELINE_PORT / make run PORT=…"),
    ("admin", "admin_host", "admin_port", "--admin-port / FORGELINE_ADMIN_PORT / make run ADMIN_PORT=…"),
    ("console", "console_host", "console_port", "--console-port / FORGELINE_CONSOLE_PORT"),
)


def _bind_error(host: str, port: int) -> OSError | None:
    """Whether a server could listen on (host, port) now, as uvicorn would (SO_REUSEADDR)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host.strip("[]"), port))
    except OSError as err:
        return err
    return None


def port_problem(settings: Settings) -> str | None:
    """One clear sentence when a port `up` needs is taken (or two services share one)."""
    seen: dict[tuple[str, int], str] = {}
    for name, host_field, port_field, how in _PORTS:
        host, port = str(getattr(settings, host_field)), int(getattr(settings, port_field))
        other = seen.get((host, port))
        if other is not None:
            return f"the {name} and the {other} are both set to port {port}; give one another port ({how})"
        seen[(host, port)] = name
        err = _bind_error(host, port)
        if err is not None:
            reason = "is already in use" if err.errno == errno.EADDRINUSE else f"cannot be used ({err.strerror})"
            return (
                f"port {port} on {host} for the {name} {reason}: stop what listens there, "
                f"or choose another port ({how})"
            )
    return None


def first_request(settings: Settings, tokens_file: Path) -> str:
    """A ready-to-paste curl line that sends an error with the default Logister token.

    The token is read from the tokens file by the command itself: printing it would copy a
    secret into terminal scrollback and service logs.
    """
    read_token = "import json, sys; print(json.load(open(sys.argv[1]))['logister_token'])"
    token = f'$(python3 -c "{read_token}" {shlex.quote(str(tokens_file))})'
    url = f"http://{connect_host(settings.host)}:{settings.port}/api/v1/ingest_events"
    body = '{"event":{"event_type":"error","message":"hello from curl"}}'
    return (
        f"curl -sS -X POST {url} -H \"Authorization: Bearer {token}\" -H 'Content-Type: application/json' -d '{body}'"
    )
