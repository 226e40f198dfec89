"""docker-compose.yml: valid Compose, and every name in it is one the code or the repo has."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest

from forgeline.config import Settings
from tests.deploy import support

pytestmark = pytest.mark.deploy


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    doc: dict[str, Any] = support.load_yaml(support.COMPOSE_FILE)
    return doc


def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]  # type: ignore[no-any-return]


def forgeline_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Services that run our image (built from deploy/Dockerfile)."""
    return {
        name: svc
        for name, svc in services(compose).items()
        if str(svc.get("image", "")).startswith("forgeline:") or "build" in svc
    }


def is_job(svc: dict[str, Any]) -> bool:
    return str(svc.get("restart", "no")) == "no"


def test_compose_file_validates_against_the_compose_spec(compose: dict[str, Any]) -> None:
    assert support.schema_errors(support.schema("compose-spec.json"), compose) == []


def test_the_schema_check_catches_a_broken_service(compose: dict[str, Any]) -> None:
    # The vendored schema is strict enough to matter: a misspelt key and a wrong type fail.
    broken = support.load_yaml(support.COMPOSE_FILE)
    broken["services"]["writer"]["healthchek"] = {"test": ["CMD", "true"]}
    broken["services"]["gateway"]["ports"] = "8080:8080"
    errors = support.schema_errors(support.schema("compose-spec.json"), broken)
    assert any("healthchek" in e for e in errors), errors
    assert any(e.startswith("services/gateway/ports") for e in errors), errors


def test_the_whole_distributed_stack_is_there(compose: dict[str, Any]) -> None:
    svcs = services(compose)
    images = {name: str(svc.get("image", "")) for name, svc in svcs.items()}
    assert images["kafka"].startswith("apache/kafka:")
    assert "controller" in svcs["kafka"]["environment"]["KAFKA_PROCESS_ROLES"], "Kafka must run in KRaft mode"
    assert "KAFKA_ZOOKEEPER_CONNECT" not in svcs["kafka"]["environment"]
    assert images["clickhouse"].startswith("clickhouse/clickhouse-server:")
    assert images["minio"].startswith("minio/minio:")
    assert images["prometheus"].startswith("prom/prometheus:")
    assert images["grafana"].startswith("grafana/grafana:")
    running = {tuple(svc["command"]) for svc in forgeline_services(compose).values() if not is_job(svc)}
    assert ("forgeline", "gateway") in running
    for name in support.processor_names():
        assert ("forgeline", "process", name) in running, f"no compose service runs processor {name!r}"
    jobs = {tuple(svc["command"]) for svc in forgeline_services(compose).values() if is_job(svc)}
    assert ("forgeline", "topics", "ensure") in jobs
    assert ("forgeline", "migrate") in jobs


def test_third_party_images_are_pinned(compose: dict[str, Any]) -> None:
    for name, svc in services(compose).items():
        if name in forgeline_services(compose):
            continue
        image = str(svc["image"])
        tag = image.rpartition(":")[2] if ":" in image else ""
        assert tag and tag != "latest", f"{name}: pin a version instead of {image!r}"


def test_every_forgeline_command_exists_in_the_cli(compose: dict[str, Any]) -> None:
    problems = []
    for name, svc in forgeline_services(compose).items():
        argv = [str(part) for part in svc.get("command", [])]
        if support.is_pending_command(argv):
            continue  # PENDING_COMMANDS: another branch of this issue adds it to the CLI
        if support.is_pending_processor(argv):
            # Not in the code yet: allowed only behind the profile of that name (PENDING_PROCESSORS).
            if argv[2] not in svc.get("profiles", []):
                problems.append(f"{name}: {argv[2]!r} is not in the code yet and must stay behind its profile")
            continue
        error = support.command_error(argv)
        if error:
            problems.append(f"{name}: {error}")
    assert problems == []


def test_a_profile_is_only_for_a_pending_service(compose: dict[str, Any]) -> None:
    for name, svc in services(compose).items():
        if svc.get("profiles"):
            assert name in support.PENDING_PROCESSORS, f"{name} is behind a profile but is not pending"


def test_one_image_built_from_the_dockerfile(compose: dict[str, Any]) -> None:
    ours = forgeline_services(compose)
    assert len({svc["image"] for svc in ours.values()}) == 1
    for name, svc in ours.items():
        build = svc["build"]
        assert (support.REPO / build["context"]).is_dir(), name
        assert (support.REPO / build["context"] / build["dockerfile"]).resolve() == support.DOCKERFILE, name


def test_forgeline_environment_is_read_by_settings(compose: dict[str, Any]) -> None:
    known = support.settings_env_names()
    for name, svc in forgeline_services(compose).items():
        env = support.env_mapping(svc.get("environment"))
        unknown = sorted(key for key in env if key.startswith("FORGELINE_") and key not in known)
        assert unknown == [], f"{name}: Settings.from_env reads no {unknown}"
        # And the values are ones Settings accepts (it raises SettingsError naming the variable).
        Settings.from_env(env)


def test_forgeline_services_use_the_distributed_backends(compose: dict[str, Any]) -> None:
    """Kafka and ClickHouse server, reachable by compose service name — never the embedded
    defaults, which would give each container a private bus and warehouse under /data."""
    svcs = services(compose)
    kafka_env = svcs["kafka"]["environment"]
    kafka_port = re.search(r"PLAINTEXT://kafka:(\d+)", kafka_env["KAFKA_ADVERTISED_LISTENERS"])
    assert kafka_port, "Kafka must advertise a PLAINTEXT listener as kafka:PORT to the other containers"
    for name, svc in forgeline_services(compose).items():
        settings = Settings.from_env(support.env_mapping(svc.get("environment")))
        bus = urlparse(settings.resolved_bus_url)
        assert bus.scheme == "kafka", f"{name}: bus {settings.resolved_bus_url}"
        for server in bus.netloc.split(","):
            host, _, port = server.partition(":")
            assert host in svcs, f"{name}: bus host {host!r} is no compose service"
            assert port == kafka_port.group(1), f"{name}: Kafka listens on {kafka_port.group(1)}, not {port}"
        dsn = urlparse(settings.resolved_warehouse_dsn)
        assert dsn.scheme in ("http", "https"), f"{name}: warehouse {dsn.scheme}:// is not a ClickHouse server"
        assert dsn.hostname in svcs, f"{name}: warehouse host {dsn.hostname!r} is no compose service"
        assert dsn.username == svcs[dsn.hostname]["environment"]["CLICKHOUSE_USER"], name
        assert dsn.password == support.interpolate(svcs[dsn.hostname]["environment"]["CLICKHOUSE_PASSWORD"]), name
        assert settings.host == "0.0.0.0", f"{name}: must listen on all interfaces inside its container"


def test_the_gateway_stores_uploads_in_minio(compose: dict[str, Any], tmp_path: Path) -> None:
    svcs = services(compose)
    gateway = next(svc for svc in forgeline_services(compose).values() if svc["command"] == ["forgeline", "gateway"])
    settings = Settings.from_env(support.env_mapping(gateway["environment"]))
    assert support.blob_store_error(settings, tmp_path) is None
    url = urlparse(settings.resolved_blob_store_url)
    assert url.scheme == "s3", "the gateway would keep uploads on its own volume"
    endpoint = urlparse(parse_qs(url.query)["endpoint"][0])
    assert endpoint.hostname in svcs and svcs[endpoint.hostname]["image"].startswith("minio/minio:")
    minio_env = support.env_mapping(svcs[endpoint.hostname]["environment"])
    assert (settings.s3_access_key.reveal(), settings.s3_secret_key.reveal()) == (
        minio_env["MINIO_ROOT_USER"],
        minio_env["MINIO_ROOT_PASSWORD"],
    )
    # The bucket the gateway writes to is the one the setup job creates, before the gateway starts.
    bucket_job = gateway["depends_on"]["minio-buckets"]
    assert bucket_job["condition"] == "service_completed_successfully"
    assert f"mc mb --ignore-existing forgeline/{url.netloc}" in " ".join(svcs["minio-buckets"]["command"])


def test_depends_on_conditions_are_satisfiable(compose: dict[str, Any]) -> None:
    svcs = services(compose)
    for name, svc in svcs.items():
        for target, spec in (svc.get("depends_on") or {}).items():
            assert target in svcs, f"{name} depends on unknown service {target}"
            condition = spec["condition"]
            if condition == "service_healthy":
                check = svcs[target].get("healthcheck") or {}
                assert check and not check.get("disable"), f"{name} waits for {target} to be healthy: it has no check"
            elif condition == "service_completed_successfully":
                assert is_job(svcs[target]), f"{name} waits for {target} to complete, but {target} restarts"


def test_processors_wait_for_their_topics_and_tables(compose: dict[str, Any]) -> None:
    jobs = {tuple(svc["command"]): name for name, svc in forgeline_services(compose).items() if is_job(svc)}
    topics_job, migrate_job = jobs[("forgeline", "topics", "ensure")], jobs[("forgeline", "migrate")]
    for name, svc in forgeline_services(compose).items():
        argv = svc["command"]
        if is_job(svc) or argv[:2] != ["forgeline", "process"]:
            continue
        deps = svc.get("depends_on") or {}
        assert deps.get(topics_job, {}).get("condition") == "service_completed_successfully", name
        if argv[2] in support.warehouse_users():
            assert deps.get(migrate_job, {}).get("condition") == "service_completed_successfully", name
    gateway = next(svc for svc in forgeline_services(compose).values() if svc["command"] == ["forgeline", "gateway"])
    assert gateway["depends_on"][topics_job]["condition"] == "service_completed_successfully"


def test_long_running_services_have_healthchecks_and_jobs_do_not(compose: dict[str, Any]) -> None:
    for name, svc in services(compose).items():
        check = svc.get("healthcheck") or {}
        if is_job(svc):
            assert name in forgeline_services(compose) and check.get("disable") or not check, name
        else:
            assert check.get("test") and not check.get("disable"), f"{name} has no healthcheck"


def test_forgeline_healthcheck_is_the_image_script(compose: dict[str, Any]) -> None:
    dockerfile = support.DOCKERFILE.read_text(encoding="utf-8")
    assert re.search(r"^COPY deploy/healthcheck\.py /usr/local/bin/forgeline-healthcheck$", dockerfile, re.M)
    for name, svc in forgeline_services(compose).items():
        if is_job(svc):
            continue
        test = svc["healthcheck"]["test"]
        assert test[:2] == ["CMD", "forgeline-healthcheck"], name
        assert "/ready" in test, f"{name}: a container is healthy when it is ready, not merely alive"


def test_bind_mounts_exist_and_named_volumes_are_declared(compose: dict[str, Any]) -> None:
    declared = set(compose.get("volumes") or {})
    for name, svc in services(compose).items():
        for volume in svc.get("volumes", []):
            source = volume.split(":")[0] if isinstance(volume, str) else volume["source"]
            if source.startswith((".", "/")):
                assert (support.REPO / source).exists(), f"{name}: mount source {source} is not in the repository"
            else:
                assert source in declared, f"{name}: volume {source} is not declared"


def test_published_ports_are_loopback_only(compose: dict[str, Any]) -> None:
    for name, svc in services(compose).items():
        for port in svc.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name}: {port} would listen on every interface of the host"
