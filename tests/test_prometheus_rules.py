"""Prometheus configuration and alerts: valid for promtool, proven to fire, and naming only
metrics that serve exports."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from stream_forecaster.metrics import ServiceMetrics

PROMETHEUS = Path(__file__).resolve().parents[1] / "deploy" / "prometheus"


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("promtool")
    assert tool, "promtool comes with Debian's prometheus package (make install)"
    return subprocess.run(
        [tool, *args], cwd=PROMETHEUS, capture_output=True, text=True, check=False, timeout=120
    )


@pytest.mark.parametrize(
    "args",
    [
        ("check", "config", "prometheus.yml"),
        ("check", "rules", "alerts.yml"),
        ("test", "rules", "alerts_test.yml"),
    ],
)
def test_promtool_accepts_and_every_alert_fires_on_its_fault(args: tuple[str, ...]) -> None:
    result = promtool(*args)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


def exported_series_names() -> set[str]:
    """Every sample name serve's metrics can produce (histogram and counter suffixes too)."""
    registry = CollectorRegistry()
    metrics = ServiceMetrics(registry)
    for metric in vars(metrics).values():
        labels = getattr(metric, "_labelnames", ())
        if labels:
            metric.labels(*["x"] * len(labels))
    return {s.name for family in registry.collect() for s in family.samples}


def test_alerts_name_only_exported_metrics() -> None:
    text = (PROMETHEUS / "alerts.yml").read_text()
    used = set(re.findall(r"\bsf_[a-z0-9_]+", text))
    assert used, "no sf_ metric found in the alerts"
    assert used <= exported_series_names(), sorted(used - exported_series_names())


def test_every_alert_has_a_firing_test() -> None:
    alerts = set(re.findall(r"- alert: (\w+)", (PROMETHEUS / "alerts.yml").read_text()))
    tested = (PROMETHEUS / "alerts_test.yml").read_text()
    fired = set(re.findall(r"alertname: (\w+)\n\s+exp_alerts:\n\s+- exp_labels", tested))
    assert alerts == fired
