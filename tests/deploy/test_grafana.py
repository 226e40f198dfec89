"""deploy/grafana: the dashboard and its provisioning, against the schema, compose and the code."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlparse

import pytest

from tests.deploy import support

pytestmark = pytest.mark.deploy

GRAFANA = support.DEPLOY / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
# Grafana's own variables, given a typical value so that the PromQL parses.
BUILTIN_VARIABLES = {"__rate_interval": "1m", "__interval": "15s", "__range": "1h", "__range_s": "3600"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    doc: dict[str, Any] = support.load_yaml(support.COMPOSE_FILE)
    return doc


@pytest.fixture(scope="module")
def datasources() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in sorted((GRAFANA / "provisioning" / "datasources").glob("*.yml")):
        docs.extend(support.load_yaml(path)["datasources"])
    return docs


def dashboard(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return doc


def all_panels(doc: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for panel in doc["panels"]:
        out.append(panel)
        out.extend(panel.get("panels", []))  # a collapsed row keeps its panels inside
    return out


def substitute(expr: str, doc: dict[str, Any]) -> str:
    values = dict(BUILTIN_VARIABLES)
    for variable in doc.get("templating", {}).get("list", []):
        values[variable["name"]] = variable.get("allValue") or ".*"

    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in values:
            raise AssertionError(f"{expr!r}: ${name} is not a variable of the dashboard")
        return values[name]

    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)", replace, expr)


def grafana_mount(compose: dict[str, Any], repo_dir: Path) -> str:
    for volume in compose["services"]["grafana"]["volumes"]:
        source, target = volume.split(":")[:2]
        if source.startswith(".") and (support.REPO / source).resolve() == repo_dir.resolve():
            return target
    raise AssertionError(f"{repo_dir} is not mounted into the grafana container")


def test_there_is_a_dashboard() -> None:
    assert [p.name for p in DASHBOARDS] == ["forgeline.json"]


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_validates_against_the_schema(path: Path) -> None:
    # SchemaStore's schema is Grafana 5's; one field changed type since: a variable's
    # `refresh` is now 0/1/2 (never, on load, on time change) instead of a boolean.
    schema = copy.deepcopy(support.schema("grafana-dashboard-5.x.json"))
    variable = schema["properties"]["dashboard"]["properties"]["templating"]["properties"]["list"]["items"]
    variable["properties"]["refresh"] = {"enum": [0, 1, 2, True, False]}
    assert support.schema_errors(schema, {"dashboard": dashboard(path)}) == []


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_layout_is_sound(path: Path) -> None:
    doc = dashboard(path)
    assert 8 <= len(doc["uid"]) <= 40
    panels = all_panels(doc)
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    cells: dict[tuple[int, int], str] = {}
    for panel in panels:
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24, f"{panel['title']}: wider than the 24-column grid"
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = panel["title"]


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_panels_query_the_provisioned_datasource(path: Path, datasources: list[dict[str, Any]]) -> None:
    uids = {ds["uid"] for ds in datasources}
    for panel in all_panels(dashboard(path)):
        if panel["type"] == "row":
            continue
        for holder in (panel, *panel["targets"]):
            assert holder["datasource"]["uid"] in uids, f"{panel['title']}: unknown datasource"
            assert holder["datasource"]["type"] == "prometheus"


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_every_query_uses_metrics_and_labels_the_code_exports(path: Path) -> None:
    doc = dashboard(path)
    known = support.exported_series()
    problems = []
    for panel in all_panels(doc):
        for target in panel.get("targets", []):
            report = support.analyse_promql(substitute(target["expr"], doc), known)
            problems += [f"{panel['title']}: {p}" for p in report.problems]
            for label in support.template_labels(target.get("legendFormat", ""), support.LEGEND_LABEL):
                if label not in report.result_labels:
                    problems.append(f"{panel['title']}: legend {{{{{label}}}}} is not a label of the result")
    for variable in doc["templating"]["list"]:
        match = re.fullmatch(r"label_values\((\w+),\s*(\w+)\)", variable["query"])
        assert match, f"variable {variable['name']}: expected label_values(metric, label)"
        metric, label = match.groups()
        if metric not in known:
            problems.append(f"variable {variable['name']}: {metric} is not exported")
        elif label not in known[metric].labels:
            problems.append(f"variable {variable['name']}: {metric} has no label {label}")
    assert problems == []


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_the_panels_the_issue_asks_for_are_there(path: Path) -> None:
    doc = dashboard(path)
    known = support.exported_series()
    used = {
        metric
        for panel in all_panels(doc)
        for target in panel.get("targets", [])
        for metric, _ in support.analyse_promql(substitute(target["expr"], doc), known).selectors
    }
    wanted = {
        "ingest rate": "forgeline_gateway_requests_total",
        "rejections by reason": "forgeline_gateway_rejections_total",
        "request latency histogram": "forgeline_gateway_request_duration_seconds_bucket",
        "bus append latency": "forgeline_bus_produce_duration_seconds_bucket",
        "consumer lag": "forgeline_processor_consumer_lag_records",
        "batch sizes": "forgeline_processor_batch_size_records_bucket",
        "insert latency": "forgeline_writer_insert_duration_seconds_bucket",
        "dead letters": "forgeline_processor_dead_letters_total",
        "monitor states": "forgeline_monitors_monitors",
    }
    missing = {what: metric for what, metric in wanted.items() if metric not in used}
    assert missing == {}


def test_provisioning_points_at_the_mounted_dashboards(compose: dict[str, Any]) -> None:
    providers_dir = GRAFANA / "provisioning" / "dashboards"
    providers = [p for path in sorted(providers_dir.glob("*.yml")) for p in support.load_yaml(path)["providers"]]
    assert providers
    mounted = grafana_mount(compose, GRAFANA / "dashboards")
    for provider in providers:
        assert provider["type"] == "file"
        assert PurePosixPath(provider["options"]["path"]) == PurePosixPath(mounted)
    assert grafana_mount(compose, GRAFANA / "provisioning") == "/etc/grafana/provisioning"
    home = compose["services"]["grafana"]["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert PurePosixPath(home).parent == PurePosixPath(mounted)
    assert (GRAFANA / "dashboards" / PurePosixPath(home).name).is_file()


def test_datasource_is_the_compose_prometheus(compose: dict[str, Any], datasources: list[dict[str, Any]]) -> None:
    assert [ds["isDefault"] for ds in datasources].count(True) == 1
    for ds in datasources:
        url = urlparse(ds["url"])
        assert ds["type"] == "prometheus"
        assert url.hostname in compose["services"], f"{ds['url']}: no such compose service"
        ports = [p.rsplit(":", 1)[1] for p in compose["services"][url.hostname].get("ports", [])]
        assert str(url.port) in ports, f"{ds['url']}: the service does not listen on {url.port}"
