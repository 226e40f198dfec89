#!/usr/bin/env python3
"""Container healthcheck: exit 0 when this container's Forgeline server answers /ready with 200.

One image runs every service, so the probe does not know which one it is in: it asks the
gateway port ($FORGELINE_PORT, 8080) first and, if nothing listens there, the processors'
admin port ($FORGELINE_ADMIN_PORT, 8081, on $FORGELINE_ADMIN_HOST). Standard library only
(a slim image has no curl). /health and /ready need no admin key.

    forgeline-healthcheck [--path /health] [--timeout 2]
"""

from __future__ import annotations

import argparse
import http.client
import os
import sys

WILDCARDS = ("", "0.0.0.0", "::", "[::]")


def probe(host: str, port: int, path: str, timeout: float) -> int | None:
    """The HTTP status of GET path, or None when nothing accepts the connection."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path)
        return conn.getresponse().status
    except ConnectionRefusedError:
        return None
    finally:
        conn.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="forgeline-healthcheck", description=__doc__.splitlines()[0])
    parser.add_argument("--path", default="/ready", help="/ready (default) or /health")
    parser.add_argument("--timeout", type=float, default=2.0, help="seconds per attempt")
    args = parser.parse_args(argv)
    # The gateway listens on FORGELINE_HOST, the admin port on FORGELINE_ADMIN_HOST (127.0.0.1
    # unless set); a wildcard address is reached on 127.0.0.1.
    targets = [
        (os.environ.get("FORGELINE_HOST", "").strip(), os.environ.get("FORGELINE_PORT") or "8080"),
        (
            os.environ.get("FORGELINE_ADMIN_HOST", "").strip() or "127.0.0.1",
            os.environ.get("FORGELINE_ADMIN_PORT") or "8081",
        ),
        # The console's own container (`forgeline console`) serves neither port above.
        (os.environ.get("FORGELINE_CONSOLE_HOST", "").strip(), os.environ.get("FORGELINE_CONSOLE_PORT") or "8082"),
    ]
    for host, raw in targets:
        host = "127.0.0.1" if host in WILDCARDS else host
        try:
            status = probe(host, int(raw), args.path, args.timeout)
        except (OSError, ValueError, http.client.HTTPException) as err:
            print(f"forgeline-healthcheck: {host}:{raw}{args.path}: {err}", file=sys.stderr)
            return 1
        if status is None:
            continue
        if status == 200:
            return 0
        print(f"forgeline-healthcheck: {host}:{raw}{args.path} answered {status}", file=sys.stderr)
        return 1
    listening = ", ".join(f"{'127.0.0.1' if host in WILDCARDS else host}:{port}" for host, port in targets)
    print(f"forgeline-healthcheck: nothing listens on {listening}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
