"""The processors' admin port in the deployment files: reachable by probes and Prometheus,
so on every interface of its container — and therefore behind a key, kept in a secret."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from forgeline.config import Settings
from services.admin import admin_exposure_problem, is_loopback
from tests.deploy import support

pytestmark = pytest.mark.deploy

HEALTHCHECK = support.DEPLOY / "healthcheck.py"


def processor_envs_in_compose() -> dict[str, dict[str, str]]:
    compose: dict[str, Any] = support.load_yaml(support.COMPOSE_FILE)
    return {
        name: support.env_mapping(svc.get("environment"))
        for name, svc in compose["services"].items()
        if svc.get("command", [])[:2] == ["forgeline", "process"]
    }


def test_compose_processors_listen_for_prometheus_behind_a_key() -> None:
    envs = processor_envs_in_compose()
    assert envs
    for name, env in envs.items():
        settings = Settings.from_env(env)
        assert not is_loopback(settings.admin_host), f"{name}: Prometheus could not scrape {settings.admin_host}"
        assert admin_exposure_problem(settings.admin_host, settings.admin_key.reveal()) is None, name
    compose_text = support.COMPOSE_FILE.read_text(encoding="utf-8")
    assert "${FORGELINE_ADMIN_KEY:-" in compose_text, "the key must be settable from the environment / .env"


def test_k8s_processors_listen_for_probes_behind_a_key_from_the_secret() -> None:
    config = support.read_env_file(support.K8S / "config.env")
    secrets = support.read_env_file(support.K8S / "secrets.env")
    assert "FORGELINE_ADMIN_KEY" not in config, "the admin key belongs in the Secret"
    settings = Settings.from_env({**config, **secrets})
    assert not is_loopback(settings.admin_host), "kubelet probes reach the pod IP, not 127.0.0.1"
    assert admin_exposure_problem(settings.admin_host, settings.admin_key.reveal()) is None


class _Ready(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def ready_on_loopback() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Ready)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def test_the_healthcheck_asks_the_admin_port_on_its_own_host(ready_on_loopback: int) -> None:
    # The gateway's host is another address (nothing there); the admin port is on loopback.
    env = {
        **os.environ,
        "FORGELINE_HOST": "127.0.0.2",
        "FORGELINE_PORT": str(ready_on_loopback),
        "FORGELINE_ADMIN_PORT": str(ready_on_loopback),
    }
    env.pop("FORGELINE_ADMIN_HOST", None)
    result = subprocess.run(
        [sys.executable, str(HEALTHCHECK)], env=env, capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 0, result.stderr
