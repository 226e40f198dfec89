"""deploy/prometheus: scrape config and alert rules, against their schemas and the code."""

from __future__ import annotations

import fnmatch
import re
import shutil
import subprocess
from pathlib import Path, PurePosixPath
from typing import Any

import pytest

from forgeline.config import Settings
from tests.deploy import support

pytestmark = pytest.mark.deploy

PROMETHEUS = support.DEPLOY / "prometheus"


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    doc: dict[str, Any] = support.load_yaml(PROMETHEUS / "prometheus.yml")
    return doc


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    doc: dict[str, Any] = support.load_yaml(support.COMPOSE_FILE)
    return doc


def container_to_repo(compose: dict[str, Any], container_path: str) -> Path:
    """Where a path inside the prometheus container comes from in the repository."""
    for volume in compose["services"]["prometheus"]["volumes"]:
        source, target = volume.split(":")[:2]
        if source.startswith(".") and PurePosixPath(container_path).is_relative_to(target):
            return support.REPO / source / PurePosixPath(container_path).relative_to(target)
    raise AssertionError(f"{container_path} is not mounted from the repository into the prometheus container")


def rule_files(config: dict[str, Any], compose: dict[str, Any]) -> list[Path]:
    found = []
    for pattern in config["rule_files"]:
        directory = container_to_repo(compose, str(PurePosixPath(pattern).parent))
        matched = sorted(p for p in directory.iterdir() if fnmatch.fnmatch(p.name, PurePosixPath(pattern).name))
        assert matched, f"rule_files {pattern}: matches no file in {directory}"
        found.extend(matched)
    return found


def alerts(config: dict[str, Any], compose: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        rule
        for path in rule_files(config, compose)
        for group in support.load_yaml(path)["groups"]
        for rule in group["rules"]
    ]


def test_config_validates_against_the_schema(config: dict[str, Any]) -> None:
    assert support.schema_errors(support.schema("prometheus.json"), config) == []


def test_compose_mounts_the_config_file(compose: dict[str, Any]) -> None:
    command = compose["services"]["prometheus"]["command"]
    config_flag = next(arg for arg in command if arg.startswith("--config.file="))
    assert container_to_repo(compose, config_flag.partition("=")[2]).resolve() == PROMETHEUS / "prometheus.yml"


def test_every_service_is_scraped_on_the_port_it_serves(config: dict[str, Any], compose: dict[str, Any]) -> None:
    targets: dict[str, tuple[str, int]] = {}
    for job in config["scrape_configs"]:
        for sd in job.get("dns_sd_configs", []):
            for name in sd["names"]:
                targets[name] = (job["job_name"], int(sd["port"]))
    for name, svc in compose["services"].items():
        argv = svc.get("command") or []
        if str(svc.get("restart", "no")) == "no" or argv[:1] != ["forgeline"]:
            continue
        settings = Settings.from_env(support.env_mapping(svc.get("environment")))
        port = {"gateway": settings.port, "console": settings.console_port}.get(argv[1], settings.admin_port)
        assert name in targets, f"compose service {name} is not scraped"
        assert targets[name][1] == port, f"{name} serves /metrics on {port}, scraped on {targets[name][1]}"


def test_rule_files_validate_against_the_schema(config: dict[str, Any], compose: dict[str, Any]) -> None:
    for path in rule_files(config, compose):
        assert support.schema_errors(support.schema("prometheus.rules.json"), support.load_yaml(path)) == [], path


def test_the_rules_schema_catches_a_broken_rule() -> None:
    broken = {"groups": [{"name": "x", "rules": [{"alert": "A", "expr": "up", "for": "five minutes"}]}]}
    assert support.schema_errors(support.schema("prometheus.rules.json"), broken)


def test_every_rule_uses_metrics_and_labels_the_code_exports(config: dict[str, Any], compose: dict[str, Any]) -> None:
    known = support.exported_series()
    jobs = {job["job_name"] for job in config["scrape_configs"]}
    problems = []
    for rule in alerts(config, compose):
        name = rule.get("alert") or rule.get("record")
        report = support.analyse_promql(rule["expr"], known)
        problems += [f"{name}: {p}" for p in report.problems]
        for _, matchers in report.selectors:
            for label, op, value in matchers:
                if label == "job":
                    wanted = value.split("|") if op == "=~" else [value]
                    problems += [f"{name}: job {job!r} is not scraped" for job in wanted if job not in jobs]
        for text in (rule.get("annotations") or {}).values():
            for label in support.template_labels(text, support.ANNOTATION_LABEL):
                if label not in report.result_labels:
                    problems.append(f"{name}: annotation uses $labels.{label}, which the expression drops")
    assert problems == []


def test_the_metric_check_catches_unknown_names_and_labels() -> None:
    known = support.exported_series()
    typo = support.analyse_promql("rate(forgeline_gateway_request_total[5m])", known)
    assert any("did you mean forgeline_gateway_requests_total" in p for p in typo.problems), typo.problems
    wrong_label = support.analyse_promql("sum by (reasons) (forgeline_gateway_rejections_total)", known)
    assert any("reasons" in p for p in wrong_label.problems), wrong_label.problems
    wrong_value = support.analyse_promql('forgeline_monitors_monitors{state="mised"}', known)
    assert any("'mised'" in p for p in wrong_value.problems), wrong_value.problems
    no_le = support.analyse_promql(
        "histogram_quantile(0.9, sum by (route) (rate(forgeline_gateway_request_duration_seconds_bucket[5m])))", known
    )
    assert any("`le`" in p for p in no_le.problems), no_le.problems
    # A counter is exported with _total, a histogram with _bucket/_sum/_count only.
    assert support.analyse_promql("forgeline_writer_rows_inserted", known).problems
    assert support.analyse_promql("forgeline_writer_insert_duration_seconds", known).problems
    assert not support.analyse_promql("forgeline_writer_insert_duration_seconds_count", known).problems


def test_the_alerts_the_issue_asks_for_are_there(config: dict[str, Any], compose: dict[str, Any]) -> None:
    known = support.exported_series()
    by_metric: dict[str, set[str]] = {}
    for rule in alerts(config, compose):
        for metric, matchers in support.analyse_promql(rule["expr"], known).selectors:
            by_metric.setdefault(metric, set()).update(f"{label}{op}{value}" for label, op, value in matchers)
            by_metric[metric].add("")
    assert "forgeline_processor_consumer_lag_records" in by_metric, "no consumer-lag alert"
    assert "forgeline_processor_dead_letters_total" in by_metric, "no dead-letter alert"
    assert "status=~5.." in by_metric.get("forgeline_gateway_requests_total", set()), "no 5xx-rate alert"
    assert "status=503" in by_metric.get("forgeline_gateway_requests_total", set()), "no gateway-503 alert"
    assert "reason=bus_unavailable" in by_metric.get("forgeline_gateway_rejections_total", set())
    assert "state=missed" in by_metric.get("forgeline_monitors_monitors", set()), "no missed-monitor alert"


def test_alerts_are_complete(config: dict[str, Any], compose: dict[str, Any]) -> None:
    names = set()
    for rule in alerts(config, compose):
        assert rule["alert"] not in names, f"duplicate alert {rule['alert']}"
        names.add(rule["alert"])
        assert re.fullmatch(r"Forgeline[A-Za-z0-9]+", rule["alert"])
        assert rule["labels"]["severity"] in ("warning", "critical")
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed (the schema check above runs)")
def test_promtool_accepts_the_rules(config: dict[str, Any], compose: dict[str, Any]) -> None:
    for path in rule_files(config, compose):
        result = subprocess.run(["promtool", "check", "rules", str(path)], capture_output=True, text=True, check=False)
        assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed (the schema check above runs)")
def test_alert_rules_fire_as_their_unit_tests_expect() -> None:
    # deploy/prometheus/tests: synthetic series → which alerts fire, when, with what text.
    for path in sorted((PROMETHEUS / "tests").glob("*.test.yml")):
        result = subprocess.run(
            ["promtool", "test", "rules", str(path)], capture_output=True, text=True, timeout=120, check=False
        )
        assert result.returncode == 0, result.stdout + result.stderr


def test_rule_unit_tests_cover_the_required_alerts() -> None:
    tested = {
        case["alertname"]
        for path in sorted((PROMETHEUS / "tests").glob("*.test.yml"))
        for group in support.load_yaml(path)["tests"]
        for case in group.get("alert_rule_test", [])
        if case["exp_alerts"]
    }
    required = {
        "ForgelineConsumerLagHigh",
        "ForgelineDeadLetters",
        "ForgelineGateway5xxRate",
        "ForgelineGateway503s",
        "ForgelineMonitorMissed",
    }
    assert required <= tested
