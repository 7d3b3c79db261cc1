"""The clients' configuration, and the kafka-python workaround every group consumer gets."""

from __future__ import annotations

import pytest
from kafka.coordinator.consumer import ConsumerCoordinator

from stream_forecaster.kafka import clients
from stream_forecaster.settings import KafkaSettings


class Coordinator:
    """What the patched ``need_rejoin`` touches of a coordinator."""

    def __init__(self) -> None:
        self.rejoin_requested = 0

    def request_rejoin(self) -> None:
        self.rejoin_requested += 1


@pytest.mark.parametrize("metadata_changed", [True, False])
def test_a_rejoin_that_metadata_started_stays_requested(
    monkeypatch: pytest.MonkeyPatch, metadata_changed: bool
) -> None:
    """kafka-python 3.0.12 forgets such a rejoin once its JoinGroup outlives the poll that
    sent it (the member then holds no partition for good); requested, it is waited for."""
    monkeypatch.setattr(ConsumerCoordinator, "need_rejoin", lambda self: metadata_changed)
    clients._keep_metadata_rejoins_requested()
    clients._keep_metadata_rejoins_requested()  # idempotent: one wrapper, not two
    coordinator = Coordinator()
    assert ConsumerCoordinator.need_rejoin(coordinator) is metadata_changed
    assert coordinator.rejoin_requested == (1 if metadata_changed else 0)


def test_client_options_carry_tls_and_sasl_but_no_secret_in_the_settings_repr() -> None:
    kafka = KafkaSettings(
        bootstrap_servers="a:9093,b:9093",
        security_protocol="SASL_SSL",
        sasl_mechanism="PLAIN",
        sasl_plain_username="feed",
        sasl_plain_password="s3cret",
    )
    config = clients.client_config(kafka)
    assert config["bootstrap_servers"] == ["a:9093", "b:9093"]
    assert config["sasl_plain_password"] == "s3cret"
    assert config["ssl_check_hostname"] is True
    assert "s3cret" not in repr(kafka)
