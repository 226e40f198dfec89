"""deploy/k8s: the kustomize base, built like `kustomize build`, validated with the
Kubernetes OpenAPI schemas (kubernetes-validate) and cross-checked with the code."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import kubernetes_validate
import pytest

from forgeline.config import Settings
from tests.deploy import support

pytestmark = pytest.mark.deploy

# The oldest Kubernetes still commonly run, and the newest the validator knows.
K8S_VERSIONS = ("1.29.0", kubernetes_validate.utils.latest_version())
IMAGE = "forgeline"  # what deploy/Dockerfile builds; kustomization.yaml `images:` retags it


@pytest.fixture(scope="module")
def kustomization() -> dict[str, Any]:
    doc: dict[str, Any] = support.load_yaml(support.K8S / "kustomization.yaml")
    return doc


def build(kustomization: dict[str, Any]) -> list[dict[str, Any]]:
    """What `kustomize build deploy/k8s` produces, for the features this base uses:
    resources, namespace, labels (without selectors), config/secret generators, images.
    Generated names keep no hash suffix here (kubectl's build is compared below)."""
    out: list[dict[str, Any]] = []
    for relative in kustomization["resources"]:
        out.extend(support.load_yaml_documents(support.K8S / relative))
    for generator, kind in (("configMapGenerator", "ConfigMap"), ("secretGenerator", "Secret")):
        for spec in kustomization.get(generator, []):
            data: dict[str, str] = {}
            for env_file in spec.get("envs", []):
                data.update(support.read_env_file(support.K8S / env_file))
            doc: dict[str, Any] = {"apiVersion": "v1", "kind": kind, "metadata": {"name": spec["name"]}}
            doc["stringData" if kind == "Secret" else "data"] = data
            if kind == "Secret":
                doc["type"] = "Opaque"
            out.append(doc)
    images = {image["name"]: image for image in kustomization.get("images", [])}
    for doc in out:
        if doc["kind"] != "Namespace":
            doc["metadata"]["namespace"] = kustomization["namespace"]
        for pairs in kustomization.get("labels", []):
            doc["metadata"].setdefault("labels", {}).update(pairs["pairs"])
        for container in containers(doc):
            name, _, tag = container["image"].partition(":")
            if name in images:
                container["image"] = (
                    f"{images[name].get('newName', name)}:{images[name].get('newTag', tag or 'latest')}"
                )
    return out


def pod_spec(doc: dict[str, Any]) -> dict[str, Any] | None:
    if doc["kind"] in ("Deployment", "Job", "StatefulSet", "DaemonSet"):
        spec: dict[str, Any] = doc["spec"]["template"]["spec"]
        return spec
    return None


def containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    spec = pod_spec(doc)
    return [*spec.get("initContainers", []), *spec["containers"]] if spec else []


def of_kind(resources: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for doc in resources if doc["kind"] == kind}


@pytest.fixture(scope="module")
def resources(kustomization: dict[str, Any]) -> list[dict[str, Any]]:
    return build(kustomization)


@pytest.fixture(scope="module")
def config(resources: list[dict[str, Any]]) -> dict[str, str]:
    """The environment every Forgeline container gets (ConfigMap + Secret via envFrom)."""
    env: dict[str, str] = {}
    for doc in resources:
        if doc["kind"] == "ConfigMap":
            env.update(doc["data"])
        if doc["kind"] == "Secret":
            env.update(doc["stringData"])
    return env


def test_kustomization_validates_against_its_schema(kustomization: dict[str, Any]) -> None:
    assert support.schema_errors(support.schema("kustomization.json"), kustomization) == []


def test_every_file_is_listed_and_every_listed_file_exists(kustomization: dict[str, Any]) -> None:
    listed = set(kustomization["resources"])
    listed |= {f for spec in kustomization.get("configMapGenerator", []) for f in spec.get("envs", [])}
    listed |= {f for spec in kustomization.get("secretGenerator", []) for f in spec.get("envs", [])}
    on_disk = {p.name for p in support.K8S.iterdir() if p.is_file()} - {"kustomization.yaml"}
    assert listed - on_disk == set(), "listed but missing"
    assert on_disk - listed == set(), "in deploy/k8s but not in kustomization.yaml (never applied)"


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_every_resource_validates_against_the_kubernetes_schema(resources: list[dict[str, Any]], version: str) -> None:
    problems = []
    for doc in resources:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as err:
            path = ".".join(str(p) for p in err.path)
            problems.append(f"{doc['kind']}/{doc['metadata']['name']}: {path}: {err.message}")
    assert problems == []


def test_the_schema_check_catches_a_broken_deployment(resources: list[dict[str, Any]]) -> None:
    import copy

    deployment = copy.deepcopy(of_kind(resources, "Deployment")["forgeline-writer"])
    deployment["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGet"]["pathh"] = "/health"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSIONS[-1], strict=True)


def test_names_are_unique(resources: list[dict[str, Any]]) -> None:
    keys = [(doc["kind"], doc["metadata"]["name"]) for doc in resources]
    assert len(keys) == len(set(keys))


def test_every_service_has_a_deployment(resources: list[dict[str, Any]]) -> None:
    commands = {tuple(c["command"]) for d in of_kind(resources, "Deployment").values() for c in containers(d)}
    assert ("forgeline", "gateway") in commands
    for name in support.processor_names():
        if name in support.PENDING_PROCESSORS:
            continue  # checked once it leaves PENDING_PROCESSORS
        assert ("forgeline", "process", name) in commands, f"no Deployment runs processor {name!r}"
    jobs = {tuple(c["command"]) for d in of_kind(resources, "Job").values() for c in containers(d)}
    assert {("forgeline", "migrate"), ("forgeline", "topics", "ensure")} <= jobs


def test_containers_run_commands_the_cli_has(resources: list[dict[str, Any]]) -> None:
    problems = []
    for doc in resources:
        for container in containers(doc):
            assert container["image"].split(":")[0] == IMAGE, f"{doc['metadata']['name']}: image {container['image']}"
            argv = container["command"]
            if support.is_pending_command(argv):
                continue  # PENDING_COMMANDS (support.py)
            error = support.command_error(argv)
            if error:
                problems.append(f"{doc['kind']}/{doc['metadata']['name']}: {error}")
    assert problems == []


def test_configuration_is_read_by_settings(config: dict[str, str]) -> None:
    unknown = sorted(k for k in config if k not in support.settings_env_names())
    assert unknown == [], f"Settings.from_env reads no {unknown}"
    settings = Settings.from_env(config)
    assert urlparse(settings.resolved_bus_url).scheme == "kafka"
    assert urlparse(settings.resolved_warehouse_dsn).scheme in ("http", "https")
    assert settings.host == "0.0.0.0"


def test_the_blob_store_settings_are_accepted(config: dict[str, str], tmp_path: Path) -> None:
    settings = Settings.from_env(config)
    assert support.blob_store_error(settings, tmp_path) is None
    assert urlparse(settings.resolved_blob_store_url).scheme == "s3", "replicas cannot share a local blob store"


def test_credentials_are_in_the_secret_not_the_configmap(resources: list[dict[str, Any]]) -> None:
    secret_names = (
        "FORGELINE_WAREHOUSE_DSN",
        "FORGELINE_BLOB_SIGNING_KEY",
        "FORGELINE_S3_ACCESS_KEY",
        "FORGELINE_S3_SECRET_KEY",
    )
    for doc in resources:
        if doc["kind"] == "ConfigMap":
            assert not set(secret_names) & set(doc["data"])
        if doc["kind"] == "Secret":
            assert set(secret_names) <= set(doc["stringData"])


def test_envfrom_refers_to_generated_objects(resources: list[dict[str, Any]]) -> None:
    configmaps, secrets = of_kind(resources, "ConfigMap"), of_kind(resources, "Secret")
    for doc in resources:
        for container in containers(doc):
            refs = container.get("envFrom", [])
            assert refs, f"{doc['metadata']['name']}: no configuration"
            for ref in refs:
                if "configMapRef" in ref:
                    assert ref["configMapRef"]["name"] in configmaps
                if "secretRef" in ref:
                    assert ref["secretRef"]["name"] in secrets


def test_probes_ports_and_resources(resources: list[dict[str, Any]], config: dict[str, str]) -> None:
    settings = Settings.from_env(config)
    for name, deployment in of_kind(resources, "Deployment").items():
        (container,) = containers(deployment)
        ports = {port["name"]: port["containerPort"] for port in container["ports"]}
        own_ports = {"gateway": settings.port, "console": settings.console_port}
        serves = own_ports.get(container["command"][1], settings.admin_port)
        for probe, path in (("livenessProbe", "/health"), ("readinessProbe", "/ready")):
            get = container[probe]["httpGet"]
            assert get["path"] == path, f"{name}: {probe} must GET {path}"
            assert ports[get["port"]] == serves, f"{name}: {probe} port {get['port']} is not {serves}"
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/port"] == str(serves)
        for kind in ("cpu", "memory"):
            request = quantity(container["resources"]["requests"][kind])
            limit = quantity(container["resources"]["limits"][kind])
            assert 0 < request <= limit, f"{name}: {kind} request {request} above its limit {limit}"
        assert deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > 30, name


def test_pods_are_hardened(resources: list[dict[str, Any]]) -> None:
    for doc in resources:
        spec = pod_spec(doc)
        if spec is None:
            continue
        assert spec["securityContext"]["runAsNonRoot"] is True
        mounts: set[str] = set()
        for container in containers(doc):
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False
            assert context["capabilities"]["drop"] == ["ALL"]
            if context.get("readOnlyRootFilesystem"):
                paths = {m["mountPath"] for m in container["volumeMounts"]}
                assert {"/tmp", "/data"} <= paths, f"{doc['metadata']['name']}: read-only root needs /tmp and /data"
            mounts |= {m["name"] for m in container.get("volumeMounts", [])}
        assert mounts <= {v["name"] for v in spec.get("volumes", [])}, doc["metadata"]["name"]


def test_selectors_match(resources: list[dict[str, Any]]) -> None:
    deployments = of_kind(resources, "Deployment")
    for name, deployment in deployments.items():
        selector = deployment["spec"]["selector"]["matchLabels"]
        assert selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items(), name
    for name, service in of_kind(resources, "Service").items():
        selector = service["spec"]["selector"]
        matched = [
            d for d in deployments.values() if selector.items() <= d["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert len(matched) == 1, f"Service {name} selects {len(matched)} Deployments"
        port_names = {p["name"] for c in containers(matched[0]) for p in c["ports"]}
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in port_names, f"Service {name}: no container port {port['targetPort']}"
    for name, pdb in of_kind(resources, "PodDisruptionBudget").items():
        selector = pdb["spec"]["selector"]["matchLabels"]
        assert any(
            selector.items() <= d["spec"]["template"]["metadata"]["labels"].items() for d in deployments.values()
        ), f"PodDisruptionBudget {name} selects no Deployment"
    claims = set(of_kind(resources, "PersistentVolumeClaim"))
    for doc in resources:
        for volume in (pod_spec(doc) or {}).get("volumes", []):
            if "persistentVolumeClaim" in volume:
                assert volume["persistentVolumeClaim"]["claimName"] in claims


def test_the_gateway_scales_with_an_hpa(resources: list[dict[str, Any]]) -> None:
    deployments = of_kind(resources, "Deployment")
    hpas = of_kind(resources, "HorizontalPodAutoscaler")
    targets = {hpa["spec"]["scaleTargetRef"]["name"]: hpa for hpa in hpas.values()}
    gateway = next(n for n, d in deployments.items() if containers(d)[0]["command"] == ["forgeline", "gateway"])
    assert gateway in targets, "no HPA for the gateway"
    hpa = targets[gateway]
    assert hpa["apiVersion"] == "autoscaling/v2" and hpa["spec"]["scaleTargetRef"]["kind"] == "Deployment"
    assert 1 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]
    # The HPA owns the replica count; one in the Deployment would fight it on every apply.
    assert "replicas" not in deployments[gateway]["spec"]
    for name in targets:
        assert name in deployments, f"HPA targets unknown Deployment {name}"


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed (the Python build above runs)")
def test_kubectl_kustomize_builds_the_same_resources(resources: list[dict[str, Any]]) -> None:
    import yaml

    result = subprocess.run(
        ["kubectl", "kustomize", str(support.K8S)], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    built = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    generated = {(d["kind"], d["metadata"]["name"]) for d in resources if d["kind"] in ("ConfigMap", "Secret")}

    def key(doc: dict[str, Any]) -> tuple[str, str]:
        name = doc["metadata"]["name"]
        for kind, base in generated:
            if doc["kind"] == kind and re.fullmatch(rf"{re.escape(base)}-[a-z0-9]{{10}}", name):
                return kind, base
        return doc["kind"], name

    assert sorted(key(d) for d in built) == sorted((d["kind"], d["metadata"]["name"]) for d in resources)
    for doc in built:
        kubernetes_validate.validate(doc, K8S_VERSIONS[-1], strict=True)
        for container in containers(doc):
            assert container["image"] in {c["image"] for d in resources for c in containers(d)}


def quantity(text: str) -> float:
    """A Kubernetes quantity (250m, 1, 512Mi, 1Gi, 2G) as a number."""
    match = re.fullmatch(r"([0-9.]+)([a-zA-Z]*)", str(text))
    assert match, f"bad quantity {text!r}"
    number, suffix = float(match.group(1)), match.group(2)
    factors = {"": 1, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
    assert suffix in factors, f"unknown quantity suffix in {text!r}"
    return number * factors[suffix]
