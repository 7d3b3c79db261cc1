"""Waiting for the cluster at start-up: the reason in one line, said once, tried again."""

from __future__ import annotations

import logging
import threading

import pytest

from stream_forecaster.kafka import availability
from stream_forecaster.kafka.availability import wait_for_cluster, why_unavailable
from stream_forecaster.settings import KafkaSettings
from tests.harness.kafka_broker import free_port


class NoWaiting(threading.Event):
    """A stop event whose waits return at once (the back-off is not under test)."""

    def __init__(self) -> None:
        super().__init__()
        self.waits: list[float] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.waits.append(timeout or 0.0)
        return self.is_set()


def test_no_broker_at_the_address_is_named_with_the_setting() -> None:
    port = free_port()
    reason = why_unavailable(KafkaSettings(bootstrap_servers=f"127.0.0.1:{port}"))
    assert reason == (
        f"no broker accepts connections (127.0.0.1:{port}: Connection refused); check "
        "SF_KAFKA__BOOTSTRAP_SERVERS and that the brokers run"
    )


def test_waits_saying_why_once_per_reason_then_says_it_answers(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    reasons = iter(["no broker accepts connections", "no broker accepts connections", "TLS", None])
    monkeypatch.setattr(availability, "why_unavailable", lambda kafka, **_: next(reasons))
    told: list[str] = []
    stop = NoWaiting()
    caplog.set_level(logging.INFO)

    assert wait_for_cluster(KafkaSettings(), stop, "serve", told.append)

    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        "serve: waiting for Kafka at 127.0.0.1:9092: no broker accepts connections; trying "
        "again, every 30 s at most",
        "serve: waiting for Kafka at 127.0.0.1:9092: TLS; trying again, every 30 s at most",
    ]
    assert "serve: Kafka at 127.0.0.1:9092 answers after" in caplog.text
    assert told == ["no broker accepts connections", "no broker accepts connections", "TLS"]
    assert stop.waits == [1.0, 2.0, 4.0]  # backing off


def test_a_stop_ends_the_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(availability, "why_unavailable", lambda kafka, **_: "down")
    stop = NoWaiting()
    stop.set()
    assert not wait_for_cluster(KafkaSettings(), stop, "retrain")
    reasons: list[str] = []
    stop = NoWaiting()

    def told(reason: str) -> None:  # SIGTERM while it waits
        reasons.append(reason)
        stop.set()

    assert not wait_for_cluster(KafkaSettings(), stop, "retrain", told)
    assert reasons == ["down"]


@pytest.mark.kafka
def test_tls_and_sasl_against_a_plaintext_listener_are_told_apart(kafka_bootstrap: str) -> None:
    assert why_unavailable(KafkaSettings(bootstrap_servers=kafka_bootstrap)) is None
    tls = why_unavailable(KafkaSettings(bootstrap_servers=kafka_bootstrap, security_protocol="SSL"))
    assert tls is not None
    assert tls.startswith(f"the TLS handshake with {kafka_bootstrap} failed: ")
    assert tls.endswith(
        "(SF_KAFKA__SSL_CAFILE, SF_KAFKA__SSL_CHECK_HOSTNAME, SF_KAFKA__SSL_CERTFILE)"
    )
    sasl = why_unavailable(wrong_password(kafka_bootstrap), timeout_s=15)
    assert sasl is not None
    assert sasl.startswith("SASL authentication failed: ")
    assert "wrong" not in sasl


@pytest.mark.kafka
def test_sasl_is_named_after_the_commands_logging_is_configured(
    kafka_bootstrap: str, restore_logging: None
) -> None:
    """configure_logging quiets kafka-python's connection loggers: the failures that tell
    SASL apart must still be seen (a real serve, retrain or simulate configures logging
    first)."""
    from stream_forecaster.logs import configure_logging

    configure_logging("INFO")
    sasl = why_unavailable(wrong_password(kafka_bootstrap), timeout_s=15)
    assert sasl is not None and sasl.startswith("SASL authentication failed: "), sasl
    assert logging.getLogger("kafka.net.connection").level == logging.CRITICAL  # restored


def wrong_password(bootstrap: str) -> KafkaSettings:
    """SASL/PLAIN against the test broker's plaintext listener: the handshake fails."""
    return KafkaSettings(
        bootstrap_servers=bootstrap,
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="PLAIN",
        sasl_plain_username="sensor-feed",
        sasl_plain_password="wrong",
    )
