"""`stream-forecaster doctor` against the real broker: a configuration that works, and the
ones that do not, each named with its fix."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from stream_forecaster.cli.commands import main
from stream_forecaster.serving.doctor import run_checks
from stream_forecaster.settings import Settings
from tests.harness.bundles import untrained_bundle
from tests.harness.kafka_broker import free_port

pytestmark = pytest.mark.kafka


@pytest.fixture
def models(tmp_path: Path) -> Path:
    folder = tmp_path / "models"
    untrained_bundle().save(folder)
    return folder


def settings_for(
    bootstrap: str, models: Path, topics: dict[str, str], guarantee: str = "at_least_once"
) -> Settings:
    return Settings(
        kafka={"bootstrap_servers": bootstrap},
        topics=topics,
        model={"path": models},
        processing={"group_id": f"doctor-{free_port()}", "guarantee": guarantee},
    )


def test_a_working_configuration_passes_every_check(
    kafka_bootstrap: str, new_topic: Callable[..., str], models: Path
) -> None:
    topics = {"input": new_topic(3), "output": new_topic(3), "dead_letter": new_topic(1)}
    settings = settings_for(kafka_bootstrap, models, topics, "exactly_once")
    checks = list(run_checks(settings))

    assert [c.name.split(" topic ")[0].split(" ")[0] for c in checks] == [
        "brokers",
        "input",
        "output",
        "dead",
        "models",
        "changelog",
        "consumer",
        "transactional",
        "model",
    ]
    assert all(c.ok for c in checks), [c.line() for c in checks]
    lines = [c.line() for c in checks]
    assert lines[1] == f"ok    input topic {topics['input']}: 3 partitions"
    assert "does not exist yet; serve (it needs CREATE on it) creates it" in lines[5]
    group = settings.processing.group_id
    assert lines[6] == (
        f"ok    consumer group {group}: may be described (serve needs READ, checked when used)"
    )
    assert lines[7].startswith(f"ok    transactional id {group}-")
    assert lines[8].startswith("ok    model: ") and "signatures off" in lines[8]


@pytest.mark.usefixtures("restore_logging")  # main() configures this process's logging
def test_a_missing_topic_and_a_wrong_port_are_named_with_the_fix(
    kafka_bootstrap: str,
    new_topic: Callable[..., str],
    models: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    topics = {"input": "no-such-input", "output": new_topic(1), "dead_letter": new_topic(1)}
    checks = {c.name: c for c in run_checks(settings_for(kafka_bootstrap, models, topics))}
    missing = checks["input topic no-such-input"]
    assert not missing.ok
    assert missing.line() == (
        "FAIL  input topic no-such-input: does not exist; fix: create it (kafka-topics.sh "
        "--create --topic no-such-input --partitions N)"
    )

    port = free_port()
    for name, value in {
        "SF_KAFKA__BOOTSTRAP_SERVERS": f"127.0.0.1:{port}",
        "SF_MODEL__PATH": str(models),
    }.items():
        monkeypatch.setenv(name, value)
    assert main(["doctor"]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0] == (
        f"FAIL  brokers: Kafka at 127.0.0.1:{port} does not answer: no broker accepts "
        f"connections (127.0.0.1:{port}: Connection refused); check "
        "SF_KAFKA__BOOTSTRAP_SERVERS and that the brokers run"
    )
    assert out[1].startswith("ok    model: ")
    assert out[-1] == "doctor: 1 failed"
