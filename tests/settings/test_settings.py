"""Settings: environment, config file, precedence, and errors that name the setting."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stream_forecaster.kafka.clients import client_config
from stream_forecaster.settings import ConfigError, Settings, load_settings


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("SF_"):
            monkeypatch.delenv(name)


def test_defaults() -> None:
    s = load_settings()
    assert s.kafka.bootstrap_servers == "127.0.0.1:9092"
    assert s.topics.input == "sensor-readings"
    assert s.model.window == 24
    assert s.model.features is None
    assert s.metrics.port == 9464


def test_nested_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SF_KAFKA__BOOTSTRAP_SERVERS", "a:1, b:2")
    monkeypatch.setenv("SF_TOPICS__INPUT", "in")
    monkeypatch.setenv("SF_TOPICS__OUTPUT", "out")
    monkeypatch.setenv("SF_TOPICS__DEAD_LETTER", "dlq")
    monkeypatch.setenv("SF_MODEL__FEATURES", '["t", "rh"]')
    monkeypatch.setenv("SF_MODEL__TARGET", "t")
    monkeypatch.setenv("SF_MODEL__WINDOW", "12")
    monkeypatch.setenv("SF_MODEL__PATH", "/models/x.sfmodel")
    monkeypatch.setenv("SF_METRICS__PORT", "9999")

    s = load_settings()

    assert client_config(s.kafka)["bootstrap_servers"] == ["a:1", "b:2"]
    assert (s.topics.input, s.topics.output, s.topics.dead_letter) == ("in", "out", "dlq")
    assert s.model.features == ["t", "rh"]
    assert s.model.target == "t"
    assert s.model.window == 12
    assert s.model.path == Path("/models/x.sfmodel")
    assert s.metrics.port == 9999


def test_settings_are_frozen() -> None:
    s = load_settings()
    with pytest.raises(ValueError, match="frozen"):
        s.model.window = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("SF_MODEL__WINDOW", "1", "greater than or equal to 2"),
        ("SF_MODEL__WINDOW", "many", "valid integer"),
        ("SF_METRICS__PORT", "70000", "less than or equal to 65535"),
        ("SF_KAFKA__BOOTSTRAP_SERVERS", "localhost", "expected host:port"),
        ("SF_MODEL__FEATURES", "[oops", "expected a JSON list"),
        ("SF_MODEL__FEATURES", '["a", "a"]', "unique"),
        ("SF_TOPICS__INPUT", "bad topic!", "Kafka topic name"),
        ("SF_KAFKA__SECURITY_PROTOCOL", "TLS", "PLAINTEXT"),
        ("SF_MODEL__WINDOWS", "12", "no such setting; did you mean SF_MODEL__WINDOW?"),
        ("SF_MODLE__PATH", "/x", "no section 'modle'"),
    ],
)
def test_invalid_value_names_the_setting(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert name in str(info.value)
    assert message in str(info.value)


def test_comma_separated_features_are_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SF_MODEL__FEATURES", "t, rh")
    assert load_settings().model.features == ["t", "rh"]


def test_sasl_without_mechanism_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SF_KAFKA__SECURITY_PROTOCOL", "SASL_SSL")
    with pytest.raises(ConfigError, match="SF_KAFKA__SASL_MECHANISM"):
        load_settings()


def test_security_settings_pass_through_to_kafka_python(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SF_KAFKA__SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("SF_KAFKA__SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("SF_KAFKA__SASL_PLAIN_USERNAME", "svc")
    monkeypatch.setenv("SF_KAFKA__SASL_PLAIN_PASSWORD", "hunter2")
    monkeypatch.setenv("SF_KAFKA__SSL_CAFILE", "/etc/ca.pem")

    config = client_config(load_settings().kafka)

    assert config["security_protocol"] == "SASL_SSL"
    assert config["sasl_mechanism"] == "SCRAM-SHA-512"
    assert config["sasl_plain_username"] == "svc"
    assert config["sasl_plain_password"] == "hunter2"
    assert config["ssl_cafile"] == "/etc/ca.pem"


def test_masked_configuration_hides_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SF_KAFKA__SASL_PLAIN_PASSWORD", "hunter2")
    monkeypatch.setenv("SF_KAFKA__SSL_PASSWORD", "keypass")

    shown = json.dumps(load_settings().masked())

    assert "hunter2" not in shown
    assert "keypass" not in shown
    assert '"sasl_plain_password": "**********"' in shown


def test_toml_file_with_environment_overriding(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = tmp_path / "sf.toml"
    config.write_text(
        '[kafka]\nbootstrap_servers = "file:9092"\nclient_id = "from-file"\n'
        '[model]\nfeatures = ["a", "b"]\nwindow = 48\n'
    )
    monkeypatch.setenv("SF_KAFKA__BOOTSTRAP_SERVERS", "env:9092")

    s = load_settings(config)

    assert s.kafka.bootstrap_servers == "env:9092"  # environment wins
    assert s.kafka.client_id == "from-file"  # the rest of the section stays
    assert s.model.features == ["a", "b"]
    assert s.model.window == 48


def test_json_file_named_by_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = tmp_path / "sf.json"
    config.write_text(json.dumps({"topics": {"input": "from-json"}}))
    monkeypatch.setenv("SF_CONFIG_FILE", str(config))
    assert load_settings().topics.input == "from-json"


def test_invalid_value_in_file_names_setting_and_file(tmp_path: Path) -> None:
    config = tmp_path / "sf.toml"
    config.write_text("[model]\nwindow = 0\n")
    with pytest.raises(ConfigError, match=r"SF_MODEL__WINDOW \(model.window in .*sf.toml\)"):
        load_settings(config)


def test_unreadable_or_malformed_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_settings(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[model\n")
    with pytest.raises(ConfigError, match="not valid toml"):
        load_settings(bad)


def test_unrelated_sf_variables_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SF_TEST_BOOTSTRAP", "127.0.0.1:1")
    assert isinstance(load_settings(), Settings)


def test_a_single_underscore_after_a_section_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SF_KAFKA_BOOTSTRAP_SERVERS", "broker:9092")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert str(info.value) == (
        "invalid setting SF_KAFKA_BOOTSTRAP_SERVERS: a section and its setting are joined by "
        "two underscores: did you mean SF_KAFKA__BOOTSTRAP_SERVERS?"
    )


def test_a_mistyped_setting_is_named_and_its_value_never_shown(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SF_MODEL__SIGNING_SECRT", "hunter2-very-secret")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert "hunter2" not in str(info.value)
    assert str(info.value) == (
        "invalid setting SF_MODEL__SIGNING_SECRT (model.signing_secrt): no such setting; "
        "did you mean SF_MODEL__SIGNING_SECRET?"
    )


def test_an_invalid_secret_is_not_shown(tmp_path: Path) -> None:
    config = tmp_path / "sf.toml"
    config.write_text("[kafka]\nsasl_plain_password = 31337042\n")
    with pytest.raises(ConfigError) as info:
        load_settings(config)
    assert "31337042" not in str(info.value)
    assert "SF_KAFKA__SASL_PLAIN_PASSWORD (kafka.sasl_plain_password in" in str(info.value)
    assert "got '**********'" in str(info.value)
