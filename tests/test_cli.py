"""The command line as a user runs it: help, config, train, backtest, and its errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from stream_forecaster.bundle import ModelBundle

BEIJING_FEATURES = "pm2.5,DEWP,TEMP,PRES,cbwd,Iws,Is,Ir"


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SF_")}
    return subprocess.run(
        [sys.executable, "-m", "stream_forecaster", *args],
        env={**clean, **(env or {})},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.fixture(scope="module")
def small_beijing(beijing_head: Callable[[int], Path]) -> Path:
    """The first 2,000 hours of the Beijing file (enough to train for a few epochs)."""
    return beijing_head(2000)


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        (
            (),
            [
                "config",
                "serve",
                "train",
                "backtest",
                "simulate",
                "watch",
                "SF_KAFKA__BOOTSTRAP_SERVERS",
            ],
        ),
        (("config",), ["--config", "secrets masked"]),
        (
            ("train",),
            [
                "--csv",
                "--key-column",
                "--time-column",
                "--time-parts",
                "--features",
                "--target",
                "--window",
                "--categorical",
                "--missing",
                "--validation",
                "--holdout",
                "--epochs",
                "--out",
            ],
        ),
        (("backtest",), ["--csv", "--model", "--out", "--tail", "persistence"]),
        (
            ("serve",),
            [
                "SF_TOPICS__DEAD_LETTER",
                "exactly_once",
                "/readyz",
                "SIGTERM",
                "SF_WINDOWS__MAX_GAP",
                "SF_PROCESSING__MAX_BATCH",
            ],
        ),
        (("simulate",), ["--source", "--keys", "--rate", "--speedup", "--loop", "--bad-ratio"]),
        (("watch",), ["--metrics-url", "--interval", "--forecasts", "--duration"]),
    ],
)
def test_help_explains_the_options(command: tuple[str, ...], expected: list[str]) -> None:
    result = run(*command, "--help")
    assert result.returncode == 0, result.stderr
    for word in expected:
        assert word in result.stdout


def test_config_prints_effective_settings_with_secrets_masked() -> None:
    result = run(
        "config", env={"SF_TOPICS__INPUT": "readings", "SF_KAFKA__SASL_PLAIN_PASSWORD": "hunter2"}
    )
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["topics"]["input"] == "readings"
    assert shown["kafka"]["sasl_plain_password"] == "**********"
    assert "hunter2" not in result.stdout + result.stderr


def test_malformed_setting_fails_at_start_up_naming_it() -> None:
    result = run("config", env={"SF_MODEL__WINDOW": "-3"})
    assert result.returncode == 2
    assert "SF_MODEL__WINDOW" in result.stderr
    assert "got '-3'" in result.stderr
    assert result.stdout == ""


def test_train_then_backtest(small_beijing: Path, tmp_path: Path) -> None:
    bundle_path = tmp_path / "m.sfmodel"
    trained = run(
        "train",
        "--csv",
        str(small_beijing),
        "--features",
        BEIJING_FEATURES,
        "--categorical",
        "cbwd",
        "--target",
        "pm2.5",
        "--epochs",
        "2",
        "--out",
        str(bundle_path),
    )
    assert trained.returncode == 0, trained.stderr
    assert "Total params: 11,851" in trained.stdout  # the Keras summary
    assert "epoch 1/2" in trained.stderr and "epoch 2/2" in trained.stderr  # progress
    assert "time from year,month,day,hour" in trained.stderr

    bundle = ModelBundle.load(bundle_path)
    info = bundle.manifest.training
    assert bundle.manifest.features == tuple(BEIJING_FEATURES.split(","))
    assert bundle.manifest.categories == {"cbwd": ("NE", "NW", "SE", "cv")}
    assert info.holdout_from_ts is not None and info.samples["holdout"] > 0
    assert info.table["time_parts"] == ["year", "month", "day", "hour"]

    report = tmp_path / "report.png"
    figures = tmp_path / "report.json"
    tested = run(
        "backtest",
        "--csv",
        str(small_beijing),
        "--model",
        str(bundle_path),
        "--out",
        str(report),
        "--json",
        str(figures),
    )
    assert tested.returncode == 0, tested.stderr
    assert "persistence" in tested.stdout and "MAE" in tested.stdout
    assert report.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    numbers = json.loads(figures.read_text())
    assert numbers["samples"] == info.samples["holdout"]  # exactly the held-out samples
    assert numbers["mae"] > 0 and numbers["persistence_mae"] > 0


def test_csv_without_a_configured_column_names_it(small_beijing: Path, tmp_path: Path) -> None:
    result = run(
        "train",
        "--csv",
        str(small_beijing),
        "--features",
        "pm2.5,TEMP,WIND",
        "--out",
        str(tmp_path / "x.sfmodel"),
    )
    assert result.returncode == 2
    assert "feature column 'WIND' not found" in result.stderr


def test_text_in_numeric_column_names_it(small_beijing: Path, tmp_path: Path) -> None:
    result = run(
        "train",
        "--csv",
        str(small_beijing),
        "--features",
        "pm2.5,TEMP,cbwd",
        "--out",
        str(tmp_path / "x.sfmodel"),
    )
    assert result.returncode == 2
    assert "column 'cbwd' holds 'NW'; expected a number; if it is a category, pass" in result.stderr


def test_damaged_bundle_fails_with_checksum_error(small_beijing: Path, tmp_path: Path) -> None:
    damaged = tmp_path / "damaged.sfmodel"
    damaged.write_bytes(b"SFBUNDLE/1 sha256=" + b"0" * 64 + b"\n{}\n")
    result = run("backtest", "--csv", str(small_beijing), "--model", str(damaged))
    assert result.returncode == 2
    assert "failed its checksum" in result.stderr
