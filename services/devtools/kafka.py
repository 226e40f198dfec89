"""A real Apache Kafka broker for development: our own launcher, or testcontainers where Docker runs.

Used by the test suite (tests/fixtures/kafka.py wraps it in pytest fixtures) and by
`forgeline bench` (the kafka and scale scenarios), so a service never imports tests.

Local launcher (no Docker): Maven fetches ``org.apache.kafka:kafka_2.13`` and its runtime
dependencies (kafka-pom.xml beside this file) once into ``~/.cache/forgeline/kafka-<version>/libs``;
later runs reuse the cache. The broker runs in KRaft combined mode (broker + controller)
on free 127.0.0.1 ports with a small heap, and is stopped by its PID (SIGTERM, then
SIGKILL). ``FORGELINE_TEST_INFRA=local|docker`` overrides the automatic choice (docker
where ``docker info`` works and testcontainers is installed).
"""

from __future__ import annotations

import base64
import fcntl
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path
from typing import Protocol


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


KAFKA_VERSION = "3.9.1"
POM = Path(__file__).resolve().parent / "kafka-pom.xml"
_STARTED_LINE = "Kafka Server started"
INFRA_ENV = "FORGELINE_TEST_INFRA"


def cache_dir(version: str = KAFKA_VERSION) -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "forgeline" / f"kafka-{version}"


def fetch_kafka(version: str = KAFKA_VERSION) -> tuple[Path, float]:
    """The directory of the broker's jars, downloaded once; returns (libs, seconds spent fetching)."""
    root = cache_dir(version)
    libs = root / "libs"
    marker = root / "complete"
    if marker.exists():
        return libs, 0.0
    root.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    # Several pytest workers may start at once: one downloads, the others wait for it.
    with open(root / "download.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if marker.exists():
            return libs, 0.0
        staging = root / "libs.partial"
        shutil.rmtree(staging, ignore_errors=True)
        subprocess.run(
            [
                "mvn",
                "-q",
                "-B",
                "-f",
                str(POM),
                "dependency:copy-dependencies",
                "-DincludeScope=runtime",
                f"-Dkafka.version={version}",
                f"-DoutputDirectory={staging}",
            ],
            check=True,
            timeout=600,
        )
        shutil.rmtree(libs, ignore_errors=True)
        staging.rename(libs)
        marker.write_text(version)
    return libs, time.monotonic() - started


class Broker(Protocol):
    @property
    def bootstrap(self) -> str: ...

    def stop(self) -> None: ...

    def start(self) -> None: ...


def _cluster_id() -> str:
    """A random KRaft cluster id. Like Kafka's own Uuid.randomUuid, never one starting with
    '-': StorageTool's argument parser would take it for an option and fail (1 run in 64)."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


class LocalKafka:
    """One KRaft broker+controller process on loopback, restartable on the same ports and data."""

    def __init__(self, work_dir: Path, version: str = KAFKA_VERSION) -> None:
        self.work_dir = work_dir
        self.version = version
        self.port = free_port()
        self.controller_port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = work_dir / "broker.log"
        self.fetch_seconds = 0.0
        self._formatted = False

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _java(self, libs: Path, main: str, *args: str) -> list[str]:
        return ["java", "-Xmx512m", "-Xms128m", "-XX:+UseSerialGC", "-cp", f"{libs}/*", *self._props(), main, *args]

    def _props(self) -> list[str]:
        return [f"-Dlog4j.configuration=file:{self.work_dir / 'log4j.properties'}", f"-Dkafka.logs.dir={self.work_dir}"]

    def _write_config(self) -> Path:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        (self.work_dir / "log4j.properties").write_text(
            "log4j.rootLogger=WARN, stdout\n"
            "log4j.logger.kafka.server.KafkaRaftServer=INFO\n"
            "log4j.logger.kafka.server.BrokerServer=INFO\n"
            "log4j.appender.stdout=org.apache.log4j.ConsoleAppender\n"
            "log4j.appender.stdout.layout=org.apache.log4j.PatternLayout\n"
            "log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n\n"
        )
        config = self.work_dir / "server.properties"
        lines = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{self.controller_port}",
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(self.work_dir / "data"),
            "num.partitions": "1",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "4",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            # Tests start consumers often: no 3 s wait before the first rebalance, and a
            # short minimum session so a killed consumer's partitions move quickly.
            "group.initial.rebalance.delay.ms": "0",
            "group.min.session.timeout.ms": "1000",
            # Topics come from ensure_topics only, as in production.
            "auto.create.topics.enable": "false",
            "message.max.bytes": str(8 * 1024 * 1024),
        }
        config.write_text("".join(f"{k}={v}\n" for k, v in lines.items()))
        return config

    def start(self, timeout_s: float = 60.0) -> None:
        libs, self.fetch_seconds = fetch_kafka(self.version)
        config = self._write_config()
        if not self._formatted:
            cluster_id = _cluster_id()
            subprocess.run(
                self._java(libs, "kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(config)),
                check=True,
                capture_output=True,
                timeout=120,
            )
            self._formatted = True
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self._java(libs, "kafka.Kafka", str(config)), stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"Kafka exited with {self.process.returncode}:\n{self.tail_log()}")
            if _STARTED_LINE in self._log_since(offset) and _accepts(self.port):
                return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"Kafka did not start within {timeout_s}s:\n{self.tail_log()}")

    def _log_since(self, offset: int) -> str:
        with open(self.log_path, "rb") as log:
            log.seek(offset)
            return log.read().decode(errors="replace")

    def tail_log(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        """SIGTERM (controlled shutdown), then SIGKILL after 20 s."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def kill(self) -> None:
        """SIGKILL: the broker dies without a controlled shutdown."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None


class DockerKafka:
    """The same broker through testcontainers (where a Docker engine is reachable)."""

    def __init__(self) -> None:
        from testcontainers.kafka import KafkaContainer

        self._container = KafkaContainer().with_kraft()
        self._bootstrap = ""

    @property
    def bootstrap(self) -> str:
        return self._bootstrap

    def start(self) -> None:
        self._container.start()
        self._bootstrap = self._container.get_bootstrap_server()

    def stop(self) -> None:
        self._container.stop()


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _docker_available() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _testcontainers_installed() -> bool:
    return importlib.util.find_spec("testcontainers") is not None


def kafka_mode() -> str:
    """``local`` or ``docker``: FORGELINE_TEST_INFRA if set, else docker where an engine answers.

    Docker needs the ``docker-tests`` extra (testcontainers); without it the automatic
    choice stays local, and an explicit ``docker`` fails with that hint.
    """
    mode = os.environ.get(INFRA_ENV, "").strip().lower()
    if mode == "docker" and not _testcontainers_installed():
        raise RuntimeError(f"{INFRA_ENV}=docker needs testcontainers: pip install -e '.[docker-tests]'")
    if mode in ("local", "docker"):
        return mode
    if mode:
        raise ValueError(f"{INFRA_ENV}={mode!r}: use local or docker")
    return "docker" if _docker_available() and _testcontainers_installed() else "local"


def launch_kafka(work_dir: Path) -> LocalKafka | DockerKafka:
    broker: LocalKafka | DockerKafka = DockerKafka() if kafka_mode() == "docker" else LocalKafka(work_dir)
    broker.start()
    return broker
