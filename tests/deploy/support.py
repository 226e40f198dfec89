"""What the static deployment checks compare against: the files in deploy/ and the code.

Nothing here starts a container: there is no Docker engine on these machines. Instead the
files are parsed, validated against their published schemas (vendored in ``schemas/``,
see its README), and every name they use — commands, FORGELINE_* variables, metrics and
their labels — is looked up in the code itself (the CLI parser, ``Settings.from_env``,
the Prometheus registry), so a rename in the code fails here instead of in production.
"""

from __future__ import annotations

import ast
import contextlib
import copy
import importlib
import io
import json
import pkgutil
import re
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import promql_parser
import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
SCHEMAS = Path(__file__).resolve().parent / "schemas"
COMPOSE_FILE = REPO / "docker-compose.yml"
DOCKERFILE = DEPLOY / "Dockerfile"
K8S = DEPLOY / "k8s"

# Services the deployment names before the code has them (issue 7 builds them). Compose keeps
# each behind a profile of the same name, so a plain `docker compose up` never starts a
# command that does not exist, and the Kubernetes base leaves them out. Once
# `forgeline process NAME` exists it is checked like any other; then drop the name here and
# the profile in docker-compose.yml.
PENDING_PROCESSORS: dict[str, str] = {}

# Commands the deployment runs that another branch of the same issue adds to the CLI. A
# pending command is only tolerated while the CLI does not have it; drop it here once it has
# (`forgeline topics ensure` has landed with the Kafka adapter).
PENDING_COMMANDS: dict[tuple[str, ...], str] = {}

# Labels Prometheus adds to every scraped series, and series it makes itself.
TARGET_LABELS = frozenset({"job", "instance"})
SYNTHETIC_SERIES: dict[str, frozenset[str]] = {
    "up": frozenset(),
    "scrape_duration_seconds": frozenset(),
    "scrape_samples_scraped": frozenset(),
}


# --- files ---------------------------------------------------------------------------------


def load_yaml(path: Path) -> Any:
    """YAML with merge keys resolved; a deep copy, so that anchors shared between
    services do not make an edit to one show up in another."""
    return copy.deepcopy(yaml.safe_load(path.read_text(encoding="utf-8")))


def load_yaml_documents(path: Path) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc is not None]


@cache
def schema(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((SCHEMAS / name).read_text(encoding="utf-8"))
    return loaded


def schema_errors(schema_doc: Mapping[str, Any], instance: Any) -> list[str]:
    """Every violation, as ``path: message`` (the validator class follows ``$schema``)."""
    validator_class = jsonschema.validators.validator_for(schema_doc)
    validator_class.check_schema(schema_doc)
    errors = validator_class(schema_doc, format_checker=validator_class.FORMAT_CHECKER).iter_errors(instance)
    return [
        f"{'/'.join(str(p) for p in error.absolute_path) or '<root>'}: {error.message}"
        for error in sorted(errors, key=lambda e: [str(p) for p in e.absolute_path])
    ]


_INTERPOLATION = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)")


def interpolate(value: str, environ: Mapping[str, str] | None = None) -> str:
    """Compose's variable substitution with an empty environment unless given:
    ``${X:-default}`` gives the default, ``$$`` a literal ``$``."""
    environ = environ or {}

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1) or match.group(4)
        op, default = match.group(2), match.group(3) or ""
        current = environ.get(name)
        if op in (":-", ":?") and not current:
            return default if op == ":-" else ""
        if op in ("-", "?") and current is None:
            return default if op == "-" else ""
        return current or ""

    return _INTERPOLATION.sub(replace, value)


def env_mapping(environment: Any) -> dict[str, str]:
    """A compose ``environment`` (mapping or list of KEY=VALUE), interpolated."""
    if environment is None:
        return {}
    if isinstance(environment, list):
        pairs = (item.partition("=") for item in environment)
        return {key: interpolate(value) for key, _, value in pairs}
    return {str(key): interpolate("" if value is None else str(value)) for key, value in environment.items()}


def read_env_file(path: Path) -> dict[str, str]:
    """A kustomize ``envs:`` file: KEY=VALUE lines, # comments."""
    out: dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise ValueError(f"{path.name}:{number}: not KEY=VALUE: {line!r}")
        out[key] = value
    return out


# --- the code ------------------------------------------------------------------------------


class _RecordingEnviron(dict[str, str]):
    """An empty environment that remembers which names were asked for."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: list[str] = []

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        self.asked.append(key)
        return default


@cache
def settings_env_names() -> frozenset[str]:
    """Every FORGELINE_* variable ``Settings.from_env`` reads, by running it."""
    from forgeline.config import Settings

    environ = _RecordingEnviron()
    Settings.from_env(environ)
    return frozenset(name for name in environ.asked if name.startswith("FORGELINE_"))


@cache
def cli_commands() -> frozenset[tuple[str, ...]]:
    """Every `forgeline …` command path from the real parser, e.g. ("tokens", "create")."""
    import argparse

    from services.cli.main import build_parser

    found: set[tuple[str, ...]] = set()

    def walk(parser: argparse.ArgumentParser, prefix: tuple[str, ...]) -> None:
        subparsers = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subparsers:
            found.add(prefix)
            return
        for action in subparsers:
            for name, child in action.choices.items():
                walk(child, (*prefix, name))

    walk(build_parser(), ())
    return frozenset(found)


def processor_names() -> tuple[str, ...]:
    from services.supervisor.processors import PROCESSORS

    return tuple(PROCESSORS)


def warehouse_users() -> tuple[str, ...]:
    from services.supervisor.processors import WAREHOUSE_USERS

    return tuple(WAREHOUSE_USERS)


def command_error(argv: list[str]) -> str | None:
    """Why ``argv`` is not a command the image can run, or None if it is one."""
    from services.cli.main import build_parser

    if not argv or argv[0] != "forgeline":
        return f"{argv!r}: not a `forgeline …` command"
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):
            args = build_parser().parse_args(argv[1:])
    except SystemExit:
        return f"{' '.join(argv)!r}: the CLI refuses it: {stderr.getvalue().strip().splitlines()[-1]}"
    if args.command == "process" and args.name not in processor_names():
        return f"{' '.join(argv)!r}: no processor {args.name!r} (PROCESSORS: {', '.join(processor_names())})"
    return None


def is_pending_processor(argv: list[str]) -> bool:
    """`forgeline process NAME` for a NAME still in PENDING_PROCESSORS and not in the code."""
    return (
        len(argv) == 3
        and argv[:2] == ["forgeline", "process"]
        and argv[2] in PENDING_PROCESSORS
        and argv[2] not in processor_names()
    )


def is_pending_command(argv: list[str]) -> bool:
    """A command of PENDING_COMMANDS that the CLI does not have yet."""
    path = tuple(argv[1:])
    return any(path[: len(cmd)] == cmd and cmd not in cli_commands() for cmd in PENDING_COMMANDS)


@dataclass(frozen=True, slots=True)
class ExportedSeries:
    metric: str  # the family as declared in the code
    kind: str  # counter | gauge | histogram | summary | …
    labels: frozenset[str]


def _import_everything() -> list[str]:
    """Import every module of the project so that every metric is registered; returns the
    modules that need an optional extra that is not installed (their metrics are unknown)."""
    import forgeline
    import services

    optional = _optional_dependencies()
    skipped = []
    for package in (forgeline, services):
        for module in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            try:
                importlib.import_module(module.name)
            except ModuleNotFoundError as err:
                if (err.name or "").split(".")[0] not in optional:
                    raise
                skipped.append(f"{module.name} (needs {err.name})")
    return skipped


def _optional_dependencies() -> frozenset[str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    names = set()
    for extra, requirements in project.get("optional-dependencies", {}).items():
        if extra == "test":
            continue
        for requirement in requirements:
            names.add(re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0].replace("-", "_").lower())
    return frozenset(names)


@cache
def exported_series() -> dict[str, ExportedSeries]:
    """Every series name a Forgeline process can expose on /metrics, with its labels.

    Read from prometheus_client's registry after importing the whole project, so a metric
    defined anywhere (not only telemetry/metrics.py) counts. Names follow the exposition
    format: counters ``_total`` (and ``_created``), histograms ``_bucket`` (+ ``le``),
    ``_sum``, ``_count``; summaries also the bare name (+ ``quantile``).
    """
    from prometheus_client import REGISTRY
    from prometheus_client.metrics import MetricWrapperBase

    _import_everything()
    out: dict[str, ExportedSeries] = {}
    collectors = set(REGISTRY._collector_to_names)  # the registry has no public listing
    for collector in collectors:
        if isinstance(collector, MetricWrapperBase):
            labels = frozenset(collector._labelnames)
            for described in collector.describe():
                base, kind = described.name, described.type
                names: dict[str, frozenset[str]]
                if kind == "counter":
                    names = {f"{base}_total": labels, f"{base}_created": labels}
                elif kind == "histogram":
                    names = {
                        f"{base}_bucket": labels | {"le"},
                        f"{base}_sum": labels,
                        f"{base}_count": labels,
                        f"{base}_created": labels,
                    }
                elif kind == "summary":
                    names = {
                        base: labels | {"quantile"},
                        f"{base}_sum": labels,
                        f"{base}_count": labels,
                        f"{base}_created": labels,
                    }
                elif kind == "info":
                    names = {f"{base}_info": labels}
                else:
                    names = {base: labels}
                for name, series_labels in names.items():
                    out[name] = ExportedSeries(base, kind, series_labels)
        else:
            # Default collectors (process_*, python_*): what they really emit.
            for family in collector.collect():
                for sample in family.samples:
                    known = out.get(sample.name)
                    labels = frozenset(sample.labels) | (known.labels if known else frozenset())
                    out[sample.name] = ExportedSeries(family.name, family.type, labels)
    return out


@cache
def source_string_literals() -> frozenset[str]:
    """Every string constant in libs/ and services/: where label values come from."""
    found: set[str] = set()
    for root in (REPO / "libs", REPO / "services"):
        for path in root.rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Constant) and isinstance(node.value, str):
                    found.add(node.value)
    return frozenset(found)


def blob_store_error(settings: Any, tmp_dir: Path) -> str | None:
    """Why the gateway would refuse its blob store settings at start, or None. Builds the
    adapter as the gateway does (an s3:// store makes no request until used)."""
    from forgeline.blobstore.factory import create_blob_store

    try:
        create_blob_store(
            settings.resolved_blob_store_url,
            settings.blob_signing_key.reveal(),
            tmp_dir / "blob-signing.key",
            settings.public_url or f"http://{settings.host}:{settings.port}",
            (settings.s3_access_key.reveal(), settings.s3_secret_key.reveal()),
        )
    except ValueError as err:
        return str(err)
    return None


# --- PromQL --------------------------------------------------------------------------------


@dataclass
class PromQLReport:
    """What one expression uses, and what is wrong with it."""

    selectors: list[tuple[str, list[tuple[str, str, str]]]] = field(default_factory=list)
    result_labels: frozenset[str] = frozenset()
    problems: list[str] = field(default_factory=list)


def analyse_promql(expr: str, known: Mapping[str, ExportedSeries]) -> PromQLReport:
    """Parse ``expr`` and check every series it selects and every label it names.

    - each selected series is one the code exports (or one Prometheus synthesizes);
    - each label in a matcher, ``by``/``without``, ``on``/``ignoring``/``group_*`` exists on
      the series below it (plus job/instance);
    - each value an ``=`` matcher compares a label with appears in the code as a string
      (``status`` must be an HTTP code; ``job``/``instance`` are checked elsewhere).
    ``result_labels`` is what the expression's result carries (for legends and annotations).
    """
    report = PromQLReport()
    try:
        tree = promql_parser.parse(expr)
    except Exception as err:  # the parser raises a bare ValueError-like error type
        report.problems.append(f"does not parse: {err}")
        return report
    report.result_labels = _labels_of(tree, known, report)
    return report


def _labels_of(node: Any, known: Mapping[str, ExportedSeries], report: PromQLReport) -> frozenset[str]:
    p = promql_parser
    if isinstance(node, p.VectorSelector):
        return _selector(node, known, report)
    if isinstance(node, p.MatrixSelector):
        return _selector(node.vector_selector, known, report)
    if isinstance(node, p.AggregateExpr):
        inner = _labels_of(node.expr, known, report)
        if node.param is not None and isinstance(node.param, p.Expr):
            _labels_of(node.param, known, report)
        if node.modifier is None:
            return frozenset()
        named = frozenset(node.modifier.labels)
        for label in sorted(named - inner):
            report.problems.append(f"{str(node.op)} by/without ({label}): no such label below it")
        if node.modifier.type == p.AggModifierType.By:
            return named
        return inner - named
    if isinstance(node, p.Call):
        arg_labels = [_labels_of(arg, known, report) for arg in node.args if isinstance(arg, p.Expr)]
        merged = frozenset().union(*arg_labels) if arg_labels else frozenset()
        name = node.func.name
        if name == "histogram_quantile":
            if "le" not in merged:
                report.problems.append("histogram_quantile over series without an `le` label")
            return merged - {"le"}
        if name in ("label_replace", "label_join"):
            strings = [a.val for a in node.args if isinstance(a, p.StringLiteral)]
            return merged | ({strings[0]} if strings else frozenset())
        return merged
    if isinstance(node, p.BinaryExpr):
        lhs = _labels_of(node.lhs, known, report)
        rhs = _labels_of(node.rhs, known, report)
        both = lhs | rhs
        modifier = node.modifier
        if modifier is not None:
            named = set(modifier.matching.labels if modifier.matching is not None else [])
            named |= set(modifier.group_labels or [])
            for label in sorted(named - both):
                report.problems.append(f"on/ignoring/group ({label}): no such label on either side")
        if isinstance(node.lhs, p.NumberLiteral | p.StringLiteral):
            return rhs
        return lhs
    if isinstance(node, p.ParenExpr | p.UnaryExpr | p.SubqueryExpr):
        return _labels_of(node.expr, known, report)
    return frozenset()


def _selector(node: Any, known: Mapping[str, ExportedSeries], report: PromQLReport) -> frozenset[str]:
    matchers = [(m.name, _op(m.op), m.value) for m in node.matchers.matchers]
    name = node.name or next((value for label, op, value in matchers if label == "__name__" and op == "="), None)
    if name is None:
        report.problems.append(f"selector without a metric name: {node}")
        return frozenset()
    report.selectors.append((name, matchers))
    if name in SYNTHETIC_SERIES:
        labels = SYNTHETIC_SERIES[name] | TARGET_LABELS
    elif name in known:
        labels = known[name].labels | TARGET_LABELS
    else:
        report.problems.append(f"{name}: no metric of that name is exported by the code{_did_you_mean(name, known)}")
        return frozenset()
    literals = source_string_literals()
    for label, op, value in matchers:
        if label == "__name__":
            continue
        if label not in labels:
            report.problems.append(
                f"{name}{{{label}{op}…}}: {name} has no label {label!r} ({', '.join(sorted(labels))})"
            )
        elif op == "=" and label == "status":
            if not re.fullmatch(r"[1-5][0-9][0-9]", value):
                report.problems.append(f'{name}{{status="{value}"}}: not an HTTP status code')
        elif op == "=" and label not in TARGET_LABELS and value not in literals:
            report.problems.append(f'{name}{{{label}="{value}"}}: the code never uses {value!r} as a value')
    return labels


def _op(op: Any) -> str:
    p = promql_parser
    # MatchOp is not hashable: compare instead of looking it up.
    pairs = ((p.MatchOp.Equal, "="), (p.MatchOp.NotEqual, "!="), (p.MatchOp.Re, "=~"), (p.MatchOp.NotRe, "!~"))
    return next(text for member, text in pairs if op == member)


def _did_you_mean(name: str, known: Mapping[str, ExportedSeries]) -> str:
    import difflib

    close = difflib.get_close_matches(name, list(known), n=1)
    return f" (did you mean {close[0]}?)" if close else ""


def template_labels(text: str, pattern: str) -> Iterator[str]:
    """Label names a legend (``{{route}}``) or an annotation (``{{ $labels.route }}``) uses."""
    yield from re.findall(pattern, text)


LEGEND_LABEL = r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}"
ANNOTATION_LABEL = r"\$labels\.([A-Za-z_][A-Za-z0-9_]*)"
