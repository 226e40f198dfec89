"""deploy/Dockerfile (parsed, not built: no Docker engine here) and its healthcheck script."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from forgeline.config import Settings
from tests.deploy import support

pytestmark = pytest.mark.deploy

HEALTHCHECK = support.DEPLOY / "healthcheck.py"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for line in support.DOCKERFILE.read_text(encoding="utf-8").splitlines():
        if line.strip().startswith("#") or not line.strip():
            continue
        pending += line.rstrip()
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        keyword, _, rest = pending.strip().partition(" ")
        out.append((keyword.upper(), rest.strip()))
        pending = ""
    return out


def final_stage() -> list[tuple[str, str]]:
    steps = instructions()
    last_from = max(i for i, (keyword, _) in enumerate(steps) if keyword == "FROM")
    return steps[last_from:]


def exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list), f"use the exec form (a JSON list), not a shell string: {args}"
    return [str(part) for part in value]


def env_pairs(args: str) -> dict[str, str]:
    return dict(re.findall(r"([A-Za-z_][A-Za-z0-9_]*)=(\S+)", args))


def test_runs_as_a_fixed_non_root_user() -> None:
    users = [args for keyword, args in final_stage() if keyword == "USER"]
    assert users, "the runtime stage sets no USER: the container would run as root"
    user = users[-1].split(":")[0]
    assert user.isdigit() and int(user) != 0, f"USER {users[-1]}: use a numeric non-root uid (runAsNonRoot)"
    # The Kubernetes manifests run with the same uid.
    for path in support.K8S.glob("*.yaml"):
        for uid in re.findall(r"runAsUser: (\d+)", path.read_text(encoding="utf-8")):
            assert uid == user, f"{path.name}: runAsUser {uid} is not the image's USER {user}"


def test_default_command_and_healthcheck_exist() -> None:
    stage = final_stage()
    cmd = exec_form(next(args for keyword, args in reversed(stage) if keyword == "CMD"))
    assert support.command_error(cmd) is None
    health = next(args for keyword, args in stage if keyword == "HEALTHCHECK")
    probe = exec_form(health.partition("CMD ")[2])
    copies = [args.split() for keyword, args in stage if keyword == "COPY" and "--from" not in args]
    installed = {dest: src for src, dest in copies}
    assert f"/usr/local/bin/{probe[0]}" in installed, f"HEALTHCHECK runs {probe[0]}, which the image does not install"
    assert (support.REPO / installed[f"/usr/local/bin/{probe[0]}"]).resolve() == HEALTHCHECK


def test_copied_sources_exist_and_extras_are_declared() -> None:
    for keyword, args in instructions():
        if keyword == "COPY" and "--from" not in args:
            *sources, _ = args.split()
            for source in sources:
                assert (support.REPO / source).exists(), f"COPY {source}: not in the repository"
    extras = tomllib.loads((support.REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"][
        "optional-dependencies"
    ]
    installs = " ".join(args for keyword, args in instructions() if keyword == "RUN" and "pip install" in args)
    requested = re.findall(r"\[([a-z0-9,_-]+)\]", installs)
    assert requested, "the image installs the project without its kafka/s3 extras"
    for extra in ",".join(requested).split(","):
        assert extra in extras, f"pip install [...{extra}...]: pyproject.toml has no such extra"
    assert {"kafka", "s3"} <= set(",".join(requested).split(","))


def test_environment_and_ports_match_settings() -> None:
    stage = final_stage()
    env: dict[str, str] = {}
    for keyword, args in stage:
        if keyword == "ENV":
            env.update(env_pairs(args))
    names = support.settings_env_names()
    assert sorted(k for k in env if k.startswith("FORGELINE_") and k not in names) == []
    settings = Settings.from_env(env)
    assert settings.host == "0.0.0.0"
    exposed = {int(port) for keyword, args in stage if keyword == "EXPOSE" for port in args.split()}
    assert exposed == {settings.port, settings.admin_port}


def test_python_matches_the_project() -> None:
    requires = tomllib.loads((support.REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"][
        "requires-python"
    ]
    minimum = tuple(int(x) for x in re.findall(r"\d+", requires)[:2])
    for keyword, args in instructions():
        if keyword == "FROM":
            version = re.match(r"python:(\d+)\.(\d+)", args)
            assert version, f"FROM {args}: expected an official python image"
            assert (int(version.group(1)), int(version.group(2))) >= minimum


# --- the healthcheck script, run for real against small local servers --------------------


class _Handler(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status if self.path == "/ready" else 200)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


def _server(status: int) -> Iterator[int]:
    handler = type("Handler", (_Handler,), {"status": status})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def ready_port() -> Iterator[int]:
    yield from _server(200)


@pytest.fixture
def unready_port() -> Iterator[int]:
    yield from _server(503)


def _closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_healthcheck(port: int, admin_port: int, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "FORGELINE_HOST": "0.0.0.0",
        "FORGELINE_PORT": str(port),
        "FORGELINE_ADMIN_PORT": str(admin_port),
    }
    return subprocess.run(
        [sys.executable, str(HEALTHCHECK), *args], env=env, capture_output=True, text=True, timeout=30, check=False
    )


def test_healthcheck_passes_on_a_ready_gateway(ready_port: int) -> None:
    assert run_healthcheck(ready_port, _closed_port()).returncode == 0


def test_healthcheck_falls_through_to_the_admin_port_of_a_processor(ready_port: int) -> None:
    assert run_healthcheck(_closed_port(), ready_port).returncode == 0


def test_healthcheck_fails_when_not_ready(unready_port: int) -> None:
    result = run_healthcheck(unready_port, _closed_port())
    assert result.returncode == 1
    assert "answered 503" in result.stderr
    # /health of the same server is fine: liveness and readiness are different questions.
    assert run_healthcheck(unready_port, _closed_port(), "--path", "/health").returncode == 0


def test_healthcheck_fails_when_nothing_listens() -> None:
    result = run_healthcheck(_closed_port(), _closed_port())
    assert result.returncode == 1
    assert "nothing listens" in result.stderr


def test_healthcheck_script_is_plain_python() -> None:
    # It runs in the image's interpreter with no project imports: a stdlib-only script.
    source = HEALTHCHECK.read_text(encoding="utf-8")
    imported = set(re.findall(r"^(?:from|import) ([a-z_.]+)", source, re.M))
    assert imported <= {"__future__", "argparse", "http.client", "os", "sys"}, imported
    assert Path(HEALTHCHECK).stat().st_mode & 0o444


def test_dockerignore_sends_only_what_the_image_copies() -> None:
    # The context is the repository root: without this, .venv/, .git/ and .forgeline/ (data)
    # would be uploaded to the daemon on every build.
    lines = [
        line.strip()
        for line in (support.REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*", "ignore everything, then allow what COPY needs"
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    for keyword, args in instructions():
        if keyword == "COPY" and "--from" not in args:
            *sources, _ = args.split()
            for source in sources:
                assert source.rstrip("/") in allowed, f"COPY {source}: excluded by .dockerignore"
