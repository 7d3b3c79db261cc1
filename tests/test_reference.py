"""The docs' reference pages are what the code generates: a page left stale fails here
(`make docs` rewrites them)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from stream_forecaster.reference import PAGES

REFERENCE = Path(__file__).resolve().parents[1] / "docs" / "reference"


@pytest.mark.parametrize("name", sorted(PAGES))
def test_the_committed_page_is_what_the_code_generates(name: str) -> None:
    committed = (REFERENCE / name).read_text()
    assert committed == PAGES[name](), (
        f"docs/reference/{name} is stale: run `make docs` (or "
        "`python -m stream_forecaster.reference docs/reference`) and commit the result"
    )


def test_every_command_setting_and_metric_is_on_its_page() -> None:
    from prometheus_client import CollectorRegistry

    from stream_forecaster.cli.commands import COMMANDS
    from stream_forecaster.monitoring.metrics import ServiceMetrics
    from stream_forecaster.monitoring.retrain_metrics import RetrainMetrics
    from stream_forecaster.settings import Settings

    cli = (REFERENCE / "cli.md").read_text()
    for command in COMMANDS:
        name = command.__name__.rsplit(".", 1)[-1]
        assert f"## stream-forecaster {name}\n" in cli, name
    settings = (REFERENCE / "settings.md").read_text()
    for section, field in Settings.model_fields.items():
        model = field.annotation
        for name in getattr(model, "model_fields", {}):
            assert f"`SF_{section.upper()}__{name.upper()}`" in settings, (section, name)
    metrics = (REFERENCE / "metrics.md").read_text()
    for metrics_class in (ServiceMetrics, RetrainMetrics):
        registry = CollectorRegistry()
        metrics_class(registry)
        for family in registry.collect():
            name = f"{family.name}_total" if family.type == "counter" else family.name
            assert f"| `{name}` | {family.type} |" in metrics, name


def test_every_rejection_reason_is_in_the_messages_page() -> None:
    from stream_forecaster.wire.errors import INVALID_REASONS

    page = (REFERENCE / "messages.md").read_text()
    section = page.split("## Rejection reasons")[1].split("\n## ")[0]
    assert set(re.findall(r"^\| `(\w+)` \| ", section, re.M)) == set(INVALID_REASONS)
