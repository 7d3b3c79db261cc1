"""What serve and retrain export, and what the dashboard and the alerts ask of it: shared
by the structural tests (test_deploy_manifests.py, test_prometheus_rules.py) and the live
Prometheus test (test_monitoring_live.py).

Everything about the exported metrics is read from the metrics classes of
``stream_forecaster.monitoring`` (:data:`EXPORTERS`: :class:`ServiceMetrics` for ``serve``,
:class:`RetrainMetrics` for ``retrain``) on a fresh registry, never listed by hand, so that a
metric added there is checked at once.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import json
import pkgutil
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from stream_forecaster import monitoring as monitoring_package
from stream_forecaster.monitoring.metrics import ServiceMetrics
from stream_forecaster.monitoring.metrics import exported_families as exported_families_of
from stream_forecaster.monitoring.retrain_metrics import RetrainMetrics

REPO = Path(__file__).resolve().parents[2]
GRAFANA = REPO / "deploy" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "stream-forecaster.json"
DATASOURCES = GRAFANA / "provisioning" / "datasources" / "prometheus.yml"
ALERTS = REPO / "deploy" / "prometheus" / "alerts.yml"

#: The metrics class of each process that serves /metrics (a CLI command). Every
#: ``...Metrics`` class of stream_forecaster.monitoring must be here (a test checks it).
EXPORTERS: dict[str, type[ServiceMetrics] | type[RetrainMetrics]] = {
    "serve": ServiceMetrics,
    "retrain": RetrainMetrics,
}

#: The Prometheus scrape job of each exporter (deploy/prometheus/prometheus.yml; the alerts'
#: ``up{job=...}`` selectors use these names).
SCRAPE_JOBS = {"serve": "stream-forecaster", "retrain": "stream-forecaster-retrain"}

#: Series that Prometheus itself makes, which the dashboard and alerts may use as well.
PROMETHEUS_SERIES = frozenset({"up"})

#: What the Grafana variables stand for when a test sends an expression to Prometheus:
#: $__rate_interval and $__interval as Grafana would pick them for a short time range, and
#: the dashboard's own $instance variable at its "All" value.
GRAFANA_TEST_VALUES = {
    "__rate_interval": "1m",
    "__interval": "15s",
    "__range": "5m",
    "instance": ".*",
}


def metrics_classes() -> set[type]:
    """Every metrics class the modules of stream_forecaster.monitoring define
    (``...Metrics``)."""
    found: set[type] = set()
    for info in pkgutil.iter_modules(monitoring_package.__path__):
        module = importlib.import_module(f"{monitoring_package.__name__}.{info.name}")
        found |= {
            cls
            for name, cls in inspect.getmembers(module, inspect.isclass)
            if cls.__module__ == module.__name__ and name.endswith("Metrics")
        }
    return found


@dataclass(frozen=True)
class MetricFamily:
    """One metric that serve or retrain exports.

    Attributes:
        exporter: the process that exports it (a key of :data:`EXPORTERS`).
        name: the family name (``sf_records`` for the counter ``sf_records_total``).
        type: counter, gauge or histogram.
        documentation: its help text.
        labels: its label names (``le`` of histograms not included).
        series: every sample name it can produce (``_total``, ``_bucket``... included).
    """

    exporter: str
    name: str
    type: str
    documentation: str
    labels: tuple[str, ...]
    series: frozenset[str]

    @property
    def queried_name(self) -> str:
        """The name a query uses for it: ``_total`` for counters, else the family name."""
        return f"{self.name}_total" if self.type == "counter" else self.name


def exported_families(exporter: str | None = None) -> list[MetricFamily]:
    """Every metric of ``exporter``'s metrics class (all of :data:`EXPORTERS` when None)."""
    families = [f for f in _all_families() if exporter in (None, f.exporter)]
    assert families, f"no exporter {exporter!r}"
    return families


@functools.cache
def _all_families() -> tuple[MetricFamily, ...]:
    """The families of every exporter, each class on a fresh registry with a child per
    labelled metric so that its samples show."""
    families = []
    for name, cls in EXPORTERS.items():
        found = []
        for family in exported_families_of(cls):
            labels: set[str] = set()
            for sample in family.samples:
                labels |= set(sample.labels) - {"le"}
            found.append(
                MetricFamily(
                    exporter=name,
                    name=family.name,
                    type=family.type,
                    documentation=family.documentation,
                    labels=tuple(sorted(labels)),
                    series=frozenset(s.name for s in family.samples),
                )
            )
        assert found, f"{cls.__name__} registered no metric"
        families.extend(found)
    return tuple(families)


def exported_series_names(exporter: str | None = None) -> set[str]:
    """Every sample name ``exporter`` (all when None) can produce (``_total``, ``_bucket``,
    ``_sum``, ``_count``... included)."""
    return {name for family in exported_families(exporter) for name in family.series}


def exporter_of(series_name: str) -> str:
    """The exporter whose metrics produce ``series_name``."""
    found = {f.exporter for f in exported_families() if series_name in f.series}
    assert len(found) == 1, f"{series_name} is exported by {sorted(found) or 'nothing'}"
    return found.pop()


_KEYWORDS = frozenset(
    {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring"}
    | {"group_left", "group_right", "inf", "nan", "Inf", "NaN", "atan2"}
)
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENTIFIER = re.compile(r"(?<![\w.$])[A-Za-z_:][A-Za-z0-9_:]*")


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (functions, keywords, label names,
    strings and durations left out)."""
    text = re.sub(r'"(?:\\.|[^"\\])*"', '""', expr)
    text = re.sub(r"'(?:\\.|[^'\\])*'", "''", text)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = _GROUPING.sub(" ", text)
    names = set()
    for match in _IDENTIFIER.finditer(text):
        word = match.group()
        if text[match.end() :].lstrip().startswith("(") or word in _KEYWORDS:
            continue
        names.add(word)
    return names


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def dashboard_panels() -> list[dict[str, Any]]:
    """The dashboard's panels that show data (rows left out, collapsed rows opened)."""
    found: list[dict[str, Any]] = []
    for panel in dashboard()["panels"]:
        if panel.get("type") == "row":
            found.extend(panel.get("panels", []))
        else:
            found.append(panel)
    return found


def panel_expressions(panel: dict[str, Any]) -> list[str]:
    return [str(t["expr"]) for t in panel.get("targets", []) if t.get("expr")]


def variable_expressions() -> list[str]:
    """The PromQL behind the dashboard's query variables: ``label_values(EXPR, label)``
    lists the label's values in EXPR's series, so EXPR is what must return data."""
    found = []
    for variable in dashboard().get("templating", {}).get("list", []):
        if variable.get("type") != "query":
            continue
        query = variable.get("query")
        text = str(query.get("query", "")) if isinstance(query, dict) else str(query or "")
        match = re.fullmatch(r"\s*label_values\((.*),\s*\w+\s*\)\s*", text, re.S)
        found.append(match.group(1) if match else text)
    return found


def substitute_variables(expr: str) -> str:
    """The expression as Grafana sends it, with :data:`GRAFANA_TEST_VALUES`.

    Raises:
        KeyError: the expression uses a variable that has no test value.
    """

    def value(match: re.Match[str]) -> str:
        name = next(g for g in match.groups() if g)
        return GRAFANA_TEST_VALUES[name]

    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\[\[(\w+)\]\]|\$(\w+)", value, expr)


def alert_rules() -> list[dict[str, Any]]:
    """The alerting rules of deploy/prometheus/alerts.yml."""
    data = yaml.safe_load(ALERTS.read_text())
    return [rule for group in data["groups"] for rule in group["rules"] if "alert" in rule]
