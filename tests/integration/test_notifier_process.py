"""`forgeline process notifier` as a real process, configured with the real `forgeline notify` CLI.

kill -9 mid-stream and a restart still create each issue / webhook delivery exactly once; a
redelivery of the same records sends nothing; secrets appear neither in the logs nor in any
file of the data directory in cleartext.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import orjson
import pytest

from forgeline.bus.embedded import EmbeddedBus
from forgeline.bus.port import OutgoingRecord
from forgeline.bus.topics import EVENTS_ERROR_GROUPS
from tests.conftest import bootstrap
from tests.fixtures.pipeline import REPO, free_port
from tests.fixtures.providers import TOKEN, WEBHOOK_SECRET, Receivers
from tests.integration.test_notifier import error_doc

pytestmark = [pytest.mark.integration, pytest.mark.slow]
N = 300


class NotifierProcess:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.admin_port = free_port()
        self.log_path = data_dir / "notifier.log"
        self.process: subprocess.Popen[bytes] | None = None

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("FORGELINE_", "LOGISTER_"))}
        env.update(
            {
                "FORGELINE_DATA_DIR": str(self.data_dir),
                "FORGELINE_NOTIFY_BACKOFF_SECONDS": "0.05",
                "FORGELINE_NOTIFY_BACKOFF_MAX_SECONDS": "1",
                "FORGELINE_NOTIFY_MAX_ATTEMPTS": "4",
                "FORGELINE_LOG_LEVEL": "debug",  # the most verbose logs must still hold no secret
            }
        )
        return env

    def cli(self, *args: str, extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "services.cli.main", *args, "--data-dir", str(self.data_dir)],
            cwd=REPO,
            env={**self.env(), **(extra_env or {})},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def start(self) -> None:
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        self.process = subprocess.Popen(
            [sys.executable, "-m", "services.cli.main", "process", "notifier", "--admin-port", str(self.admin_port)],
            cwd=REPO,
            env=self.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log_path.read_text()[-3000:]
            try:
                if httpx.get(f"http://127.0.0.1:{self.admin_port}/ready", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError("notifier not ready")

    def kill9(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()
        self.process = None

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            assert self.process.wait(timeout=30) == 0
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
            self.process = None

    def metrics(self) -> str:
        return httpx.get(f"http://127.0.0.1:{self.admin_port}/metrics", timeout=5).text


def publish(bus: EmbeddedBus, docs: list[dict[str, object]]) -> None:
    async def _send() -> None:
        producer = bus.producer()
        await producer.start()
        try:
            records = [
                OutgoingRecord(EVENTS_ERROR_GROUPS, orjson.dumps(d), key=str(d["group_id"]).encode()) for d in docs
            ]
            await producer.send_many(records)
        finally:
            await producer.stop()

    asyncio.run(_send())


def _markers(receivers: Receivers) -> list[str]:
    return [i["body"].rsplit("forgeline-delivery: ", 1)[1] for i in receivers.items("github")]


def test_notify_cli_and_exactly_once_across_kill_9(tmp_path: Path, receivers: Receivers) -> None:
    data_dir = tmp_path / "data"
    bus, tokens = bootstrap(data_dir)
    proc = NotifierProcess(data_dir)
    base = receivers.base_url
    secrets_env = {"HOOK_SECRET": WEBHOOK_SECRET, "GH_TOKEN": TOKEN}

    # Configure with the CLI: one webhook, one GitHub repo, one refused webhook (for `test`).
    hook = proc.cli(
        "notify",
        "add",
        "webhook",
        "--url",
        f"{base}/webhook/main",
        "--secret-env",
        "HOOK_SECRET",
        "--rate",
        "2000",
        "--on",
        "error_new,error_regressed",
        "--allow-private",  # the receivers listen on 127.0.0.1
        extra_env=secrets_env,
    )
    assert hook.returncode == 0, hook.stderr
    gh = proc.cli(
        "notify",
        "add",
        "github",
        "--repo",
        "acme/game",
        "--base-url",
        f"{base}/github",
        "--secret-env",
        "GH_TOKEN",
        "--rate",
        "2000",
        "--name",
        "issues",
        "--allow-private",
        extra_env=secrets_env,
    )
    assert gh.returncode == 0, gh.stderr
    bad = proc.cli(
        "notify", "add", "webhook", "--url", f"{base}/webhook/refused", "--name", "refused", "--allow-private"
    )
    assert bad.returncode == 0 and "signing secret (shown once" in bad.stderr
    hook_id, gh_id, bad_id = hook.stdout.strip(), gh.stdout.strip(), bad.stdout.strip()

    # Clear errors for bad input.
    missing = proc.cli("notify", "add", "github", "--secret", "x")
    assert missing.returncode == 1 and "--repo" in missing.stderr
    unknown = proc.cli("notify", "add", "webhook", "--url", f"{base}/x", "--project", "nope")
    assert unknown.returncode == 1 and "no project 'nope'" in unknown.stderr
    # The receivers are on loopback: without --allow-private such a target is refused.
    private = proc.cli("notify", "add", "webhook", "--url", f"{base}/webhook/main")
    assert private.returncode == 1 and "loopback address; refused" in private.stderr, private.stderr
    assert proc.cli("notify", "remove", "no-such-target").returncode == 1

    listing = proc.cli("notify", "list")
    assert listing.returncode == 0 and hook_id in listing.stdout and gh_id in listing.stdout
    assert "acme/game" in listing.stdout and TOKEN not in listing.stdout and WEBHOOK_SECRET not in listing.stdout

    # `notify test` sends now, through the same provider code; a receiver that does not know the
    # (generated) secret of the third target refuses its signature: the test fails, visibly.
    tested = proc.cli("notify", "test", hook_id)
    assert tested.returncode == 0, tested.stderr
    assert [i["subject"] for i in receivers.items("webhook")] == ["test"]
    refused = proc.cli("notify", "test", bad_id)
    assert refused.returncode == 1 and "test failed (http_401)" in refused.stderr
    removed = proc.cli("notify", "remove", bad_id)
    assert removed.returncode == 0 and bad_id not in proc.cli("notify", "list").stdout

    # The stream: N new error groups, the notifier killed -9 mid-way and restarted.
    assert tokens["project_id"]
    docs = [{**error_doc(i), "project_id": tokens["project_id"]} for i in range(N)]
    publish(bus, docs)
    proc.start()
    try:
        receivers.wait_for("webhook", 1 + N // 4, timeout_s=60)
        proc.kill9()
        mid = (receivers.count("webhook") - 1, receivers.count("github"))
        assert mid[0] < N or mid[1] < N, "killed too late to test a restart"
        proc.start()
        assert receivers.wait_for("webhook", 1 + N, timeout_s=120) == 1 + N
        assert receivers.wait_for("github", N, timeout_s=120) == N
        # Redelivery of the same records, then a sentinel to know they were all read.
        publish(bus, docs + [{**error_doc(N), "project_id": tokens["project_id"]}])
        assert receivers.wait_for("github", N + 1, timeout_s=60) == N + 1
        receivers.wait_for("webhook", N + 2, timeout_s=30)
        time.sleep(0.5)  # anything sent twice would arrive with the sentinel
        assert receivers.count("webhook") == N + 2 and receivers.count("github") == N + 1
        markers = _markers(receivers)
        assert len(set(markers)) == len(markers) == N + 1  # GitHub has no idempotency key: no duplicate issue
        assert receivers.bad_signatures == 1  # only the refused `notify test`
        assert "forgeline_notifier_sent_total" in proc.metrics()
    finally:
        proc.stop()

    # Secrets: not in the logs, not in any stored file in cleartext (the key file is not a secret).
    assert gh_id and hook_id
    for path in data_dir.rglob("*"):
        if path.is_file():
            blob = path.read_bytes()
            assert TOKEN.encode() not in blob and WEBHOOK_SECRET.encode() not in blob, path
    assert os.stat(data_dir / "notify.key").st_mode & 0o077 == 0
