"""Prometheus configuration and alerts: valid for promtool, proven to fire, and naming only
metrics that serve or retrain export."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.harness.monitoring import (
    EXPORTERS,
    SCRAPE_JOBS,
    alert_rules,
    exported_series_names,
    metrics_classes,
)

PROMETHEUS = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"


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


def test_every_metrics_class_is_an_exporter() -> None:
    """A metrics class added to stream_forecaster/monitoring/ is checked here at once."""
    assert metrics_classes() == set(EXPORTERS.values())


def test_alerts_name_only_exported_metrics() -> None:
    text = (PROMETHEUS / "alerts.yml").read_text()
    used = set(re.findall(r"\bsf_[a-z0-9_]+", text))
    exported = exported_series_names()
    assert used, "no sf_ metric found in the alerts"
    assert used <= exported, sorted(used - exported)
    for exporter in EXPORTERS:
        assert used & exported_series_names(exporter), f"no alert on {exporter}'s metrics"


def alert_tests() -> list[dict[str, Any]]:
    """Every alert_rule_test case of alerts_test.yml."""
    data = yaml.safe_load((PROMETHEUS / "alerts_test.yml").read_text())
    return [case for test in data["tests"] for case in test.get("alert_rule_test", [])]


def test_every_alert_fires_on_a_fault_and_stays_silent_on_a_healthy_stream() -> None:
    alerts = {rule["alert"] for rule in alert_rules()}
    fired = {case["alertname"] for case in alert_tests() if case.get("exp_alerts")}
    silent = {case["alertname"] for case in alert_tests() if not case.get("exp_alerts")}
    assert fired == alerts, f"without a firing test: {sorted(alerts - fired)}"
    assert silent == alerts, f"without a silent test: {sorted(alerts - silent)}"


def scrape_jobs() -> dict[str, dict[str, Any]]:
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    return {job["job_name"]: job for job in config["scrape_configs"]}


def test_prometheus_scrapes_every_exporter_and_the_alerts_select_those_jobs() -> None:
    jobs = scrape_jobs()
    assert set(SCRAPE_JOBS) == set(EXPORTERS)
    for exporter, job in SCRAPE_JOBS.items():
        assert job in jobs, f"prometheus.yml does not scrape {exporter} (job {job})"
        assert jobs[job].get("metrics_path", "/metrics") == "/metrics", job
    for rule in alert_rules():
        for job in re.findall(r'\bjob\s*=~?\s*"([^"]*)"', str(rule["expr"])):
            assert job in jobs, f"{rule['alert']}: no scrape job {job!r} in prometheus.yml"
    for exporter, job in SCRAPE_JOBS.items():
        down = [r for r in alert_rules() if f'up{{job="{job}"}} == 0' in str(r["expr"])]
        assert down, f"no alert for {exporter} not answering /metrics"
