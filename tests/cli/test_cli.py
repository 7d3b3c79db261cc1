"""The command line as a user runs it: help, config, train, backtest, and its errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from stream_forecaster.model.bundle import ModelBundle

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


def train_beijing(csv: Path) -> tuple[str, ...]:
    """`train` on the Beijing sample's 8 inputs, forecasting pm2.5."""
    return (
        *("train", "--csv", str(csv), "--features", BEIJING_FEATURES),
        *("--categorical", "cbwd", "--target", "pm2.5"),
    )


@pytest.mark.slow
def test_train_then_backtest(small_beijing: Path, tmp_path: Path) -> None:
    bundle_path = tmp_path / "m.sfmodel"
    trained = run(
        *train_beijing(small_beijing),
        "--epochs",
        "2",
        "--name",
        "beijing-pm25",
        "--out",
        str(bundle_path),
    )
    assert trained.returncode == 0, trained.stderr
    assert "Total params: 11,851" in trained.stdout  # the Keras summary
    assert "epoch 1/2" in trained.stderr and "epoch 2/2" in trained.stderr  # progress
    assert "time from year,month,day,hour" in trained.stderr
    # --calendar auto (the default): with and without, the lower validation MAE kept.
    assert "calendar inputs (--calendar auto): none: validation MAE " in trained.stdout
    assert "hour_of_day, day_of_week: validation MAE" in trained.stdout
    # The model beside the three baselines on the held-out data, with skill.
    assert "on the held-out data (never trained on):" in trained.stdout
    for method in ("persistence", "seasonal naive", "ridge"):
        assert f"  {method}" in trained.stdout

    bundle = ModelBundle.load(bundle_path)
    assert bundle.manifest.name == "beijing-pm25"
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
    baselines = numbers["baselines"]
    assert set(baselines["pooled"]) == {"model", "persistence", "seasonal naive", "ridge"}
    assert baselines["pooled"]["persistence"]["mae"] == pytest.approx(numbers["persistence_mae"])
    assert baselines["pooled"]["ridge"]["mae"] > 0 and baselines["seasonal_share"] > 0.9

    # From a date: the samples from then on; a model made to fail a skill bar writes nothing.
    dated = run(
        "backtest", "--csv", str(small_beijing), "--model", str(bundle_path), "--from", "2010-03-15"
    )
    assert dated.returncode == 0, dated.stderr
    assert "one-step forecasts, 2010-03-15T" in dated.stdout
    bad_date = run(
        "backtest", "--csv", str(small_beijing), "--model", str(bundle_path), "--from", "soon"
    )
    assert bad_date.returncode == 2 and "expected a date such as 2014-11-01" in bad_date.stderr
    refused = run(
        *train_beijing(small_beijing),
        "--epochs",
        "1",
        "--require-skill",
        "0.99",
        "--out",
        str(tmp_path / "refused.sfmodel"),
    )
    assert refused.returncode == 1
    assert "is below --require-skill +0.9900; nothing written" in refused.stderr
    assert not (tmp_path / "refused.sfmodel").exists()


@pytest.mark.slow
def test_train_into_a_registry_adds_a_candidate_that_models_list_shows(
    small_beijing: Path, tmp_path: Path
) -> None:
    from stream_forecaster.model.registry import Registry
    from tests.harness.bundles import untrained_bundle

    registry = Registry(tmp_path / "models")
    served = untrained_bundle()
    registry.add(served, status="promoted")
    trained = run(
        "train",
        *("--csv", str(small_beijing), "--features", BEIJING_FEATURES, "--categorical", "cbwd"),
        *("--epochs", "1", "--out", str(tmp_path / "models")),
    )
    assert trained.returncode == 0, trained.stderr
    (entry,) = [e for e in registry.entries() if e.version != served.version]
    assert entry.status == "candidate"
    assert (
        f"as a candidate; `stream-forecaster models promote {entry.version}` signs and serves it"
        in (trained.stdout)
    )
    assert registry.current() is not None and registry.current().version == served.version  # type: ignore[union-attr]
    listed = run("models", "list", env={"SF_MODEL__PATH": str(tmp_path / "models")})
    assert entry.version in listed.stdout
    assert f"current: {served.version}" in listed.stdout


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


def test_a_target_that_is_not_a_feature_is_one_line(small_beijing: Path, tmp_path: Path) -> None:
    result = run(
        "train",
        *("--csv", str(small_beijing), "--features", "TEMP,DEWP", "--target", "pm2.5"),
        *("--out", str(tmp_path / "x.sfmodel")),
    )
    assert result.returncode == 2
    assert result.stderr == (
        "stream-forecaster train: error: the target 'pm2.5' is not one of the features "
        "TEMP,DEWP: the model reads the target's past values too; add it to --features (or "
        "SF_MODEL__FEATURES)\n"
    )


@pytest.mark.slow
def test_retrain_with_a_bundle_file_for_its_folder_is_one_line(tmp_path: Path) -> None:
    bundle = tmp_path / "m.sfmodel"
    bundle.write_bytes(b"not even a bundle")
    result = run(
        "retrain",
        env={
            "SF_MODEL__PATH": str(bundle),
            "SF_KAFKA__BOOTSTRAP_SERVERS": "127.0.0.1:1",
            "SF_METRICS__PORT": "0",
        },
    )
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last == (
        f"stream-forecaster retrain: error: SF_MODEL__PATH {bundle} is a bundle file; the "
        "registry needs a folder (set SF_MODEL__PATH to the folder holding the *.sfmodel files)"
    )
    assert "Traceback" not in result.stderr


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


# -- models: list, promote, rollback (registry folder + model topic) -----------------------------


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        (("models",), ["list", "promote", "rollback", "SF_TOPICS__MODELS", "SF_MODEL__NAME"]),
        (("models", "list"), ["SF_MODEL__PATH", "current", "MAE", "rejected", "--config"]),
        (("models", "promote"), ["VERSION", "signing key", "history", "--config"]),
        (("models", "rollback"), ["previous", "SF_TOPICS__MODELS", "history", "--config"]),
    ],
)
def test_models_help_explains_each_action(command: tuple[str, ...], expected: list[str]) -> None:
    result = run(*command, "--help")
    assert result.returncode == 0, result.stderr
    for word in expected:
        assert word in result.stdout


def _model_records(bootstrap: str, topic: str) -> list[Any]:
    """Every record on the model topic, oldest first."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        consumer.seek_to_beginning(tp)
        end = consumer.end_offsets([tp])[tp]
        records: list[Any] = []
        while consumer.position(tp) < end:
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(batch)
        return records
    finally:
        consumer.close(autocommit=False)


@pytest.mark.kafka
def test_models_list_promote_and_rollback(
    kafka_bootstrap: str, new_topic: Callable[..., str], tmp_path: Path
) -> None:
    from stream_forecaster.model.keys import load_public_keys
    from stream_forecaster.model.registry import Registry
    from stream_forecaster.model.signing import Verifier, rollback_from
    from tests.harness.bundles import untrained_bundle
    from tests.harness.signing import key_signature

    keygen = run("models", "keygen", str(tmp_path / "keys"))
    assert keygen.returncode == 0, keygen.stderr
    private, public = sorted((tmp_path / "keys").iterdir())  # <id>.key, <id>.pub
    assert f"{private}  private: SF_MODEL__SIGNING_KEY" in keygen.stdout
    assert f"{public}  public: SF_MODEL__TRUSTED_KEYS" in keygen.stdout
    verifier = Verifier(load_public_keys(public), None)  # what serve holds

    def verify(data: bytes, signature: str | None, version: str, release: str) -> None:
        verifier.verify(data, signature, name="pm25", version=version, release=release)

    v1, v2, v3 = (untrained_bundle(seed=s, created_at=f"2026-04-0{s}T00:00:00Z") for s in (1, 2, 3))
    registry = Registry(tmp_path / "models")
    registry.add(
        v1,
        status="promoted",
        metrics={"holdout_mae": 1.5, "persistence_mae": 2.0},
        signature=key_signature(v1, private, name="pm25"),
    )
    registry.add(v2, status="rejected", reason="holdout MAE 2.1000 >= current 1.5000")
    registry.add(v3, status="candidate", metrics={"holdout_mae": 1.25})
    topic = new_topic(1, **{"cleanup.policy": "compact"})
    env = {
        "SF_MODEL__PATH": str(tmp_path / "models"),
        "SF_KAFKA__BOOTSTRAP_SERVERS": kafka_bootstrap,
        "SF_TOPICS__MODELS": topic,
        "SF_MODEL__NAME": "pm25",
        "SF_MODEL__SIGNING_KEY": str(private),
    }

    listed = run("models", "list", env=env)
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0].split() == ["VERSION", "CREATED", "STATUS", "HOLDOUT_MAE", "REASON"]
    assert lines[1].split() == [
        "*",
        v1.version,
        "2026-04-01T00:00:00Z",
        "promoted",
        "1.5000",
    ]
    assert lines[2].split()[:3] == [v2.version, "2026-04-02T00:00:00Z", "rejected"]
    assert lines[2].endswith("holdout MAE 2.1000 >= current 1.5000")
    assert lines[3].split() == [v3.version, "2026-04-03T00:00:00Z", "candidate", "1.2500"]
    assert f"current: {v1.version}" in listed.stdout

    promoted = run("models", "promote", v3.version, env=env)
    assert promoted.returncode == 0, promoted.stderr
    assert f"promoted {v3.version} (was {v1.version})" in promoted.stdout
    current = registry.current()
    assert current is not None and current.version == v3.version
    assert registry.history() == [v1.version, v3.version]
    v3_bytes = registry.bundle_bytes(v3.version)
    verify(v3_bytes, current.signature, v3.version, "promote")  # signed by the command
    record = _model_records(kafka_bootstrap, topic)[-1]
    headers = dict(record.headers)
    assert record.key == b"pm25"
    assert record.value == v3_bytes
    assert headers["sf.version"] == v3.version.encode()
    assert headers["sf.release"] == b"promote"
    verify(record.value, headers["sf.signature"].decode(), v3.version, "promote")

    rolled = run("models", "rollback", env=env)
    assert rolled.returncode == 0, rolled.stderr
    assert f"rolled back from {v3.version} to {v1.version}" in rolled.stdout
    current = registry.current()
    assert current is not None and current.version == v1.version
    records = _model_records(kafka_bootstrap, topic)
    assert len(records) == 2
    headers = dict(records[-1].headers)
    assert headers["sf.version"] == v1.version.encode()
    release = rollback_from(v3.version)  # a signed rollback record: serve takes it back
    assert headers["sf.release"] == release.encode()
    verify(records[-1].value, headers["sf.signature"].decode(), v1.version, release)
    assert (current.release, current.signature) == (release, headers["sf.signature"].decode())

    again = run("models", "rollback", env=env)
    assert again.returncode == 2
    assert "no previous version" in again.stderr and v1.version in again.stderr

    unknown = run("models", "promote", "20990101T000000Z-deadbeef", env=env)
    assert unknown.returncode == 2
    assert "no version '20990101T000000Z-deadbeef'" in unknown.stderr
    for bundle in (v1, v2, v3):
        assert bundle.version in unknown.stderr

    # A registry file swapped for another bundle fails its recorded signature: not published.
    registry.promote(v2.version, signature=key_signature(v2, private, name="pm25"))
    registry.rollback()
    (tmp_path / "models" / f"{v2.version}.sfmodel").write_bytes(v3_bytes)
    forged = run("models", "promote", v2.version, env=env)
    assert forged.returncode == 2
    assert "its signature does not cover model 'pm25', version " + v2.version in forged.stderr
    assert len(_model_records(kafka_bootstrap, topic)) == 2
    current = registry.current()
    assert current is not None and current.version == v1.version


def test_models_on_an_empty_registry(tmp_path: Path) -> None:
    env = {"SF_MODEL__PATH": str(tmp_path / "models")}
    listed = run("models", "list", env=env)
    assert listed.returncode == 0, listed.stderr
    assert "no model versions" in listed.stdout

    promoted = run("models", "promote", "20260101T000000Z-00000000", env=env)
    assert promoted.returncode == 2
    assert "no version '20260101T000000Z-00000000'" in promoted.stderr
    assert "it holds: none" in promoted.stderr

    rolled = run("models", "rollback", env=env)
    assert rolled.returncode == 2
    assert "is empty" in rolled.stderr
    assert not (tmp_path / "models").exists()  # reading wrote nothing


@pytest.mark.slow
def test_models_promote_without_kafka_changes_nothing(tmp_path: Path) -> None:
    from stream_forecaster.model.registry import Registry
    from tests.harness.bundles import untrained_bundle
    from tests.harness.kafka_broker import free_port

    registry = Registry(tmp_path)
    v1, v2 = (untrained_bundle(seed=s, created_at=f"2026-05-0{s}T00:00:00Z") for s in (1, 2))
    registry.add(v1, status="promoted")
    registry.add(v2)
    env = {
        "SF_MODEL__PATH": str(tmp_path),
        "SF_KAFKA__BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",
    }
    result = run("models", "promote", v2.version, env=env)
    assert result.returncode == 1
    assert "cannot reach the Kafka brokers" in result.stderr
    assert "registry is unchanged" in result.stderr
    current = registry.current()
    assert current is not None and current.version == v1.version


@pytest.mark.usefixtures("restore_logging")  # main() configures this process's logging
def test_a_missing_acl_is_one_line_without_a_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from kafka.errors import TopicAuthorizationFailedError

    from stream_forecaster.cli import doctor
    from stream_forecaster.cli.commands import main

    def refused(args: object, settings: object) -> int:
        raise TopicAuthorizationFailedError("sensor-readings")

    monkeypatch.setattr(doctor, "run", refused)
    assert main(["doctor"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(
        "stream-forecaster doctor: error: Kafka refused: TopicAuthorizationFailedError"
    )
    assert "not authorized to access the requested topic" in err and "your-cluster" in err
