"""Logging: one line per event, and kafka-python's noise kept out of normal runs."""

from __future__ import annotations

import logging

import pytest

from stream_forecaster.logs import configure_logging


@pytest.mark.usefixtures("restore_logging")
def test_kafka_python_noise_is_shown_at_debug_only(capsys: pytest.CaptureFixture[str]) -> None:
    selector, cluster = logging.getLogger("kafka.net.selector"), logging.getLogger("kafka.cluster")
    configure_logging("INFO")
    selector.warning("Task %r ran for %.3fs. It is blocking the event loop -- ...", "t", 1.2)
    cluster.error("Topic %s not found in cluster metadata", "sensor-readings")
    cluster.error("Topic %s is not authorized for this client", "sensor-readings")
    logging.getLogger("kafka.net.transport").error("socket disconnected")
    logging.getLogger("kafka.net.manager").warning("Bootstrap bootstrap-0 not ready")
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1
    assert lines[0].endswith(
        "ERROR kafka.cluster: Topic sensor-readings is not authorized for this client"
    )

    configure_logging("DEBUG")
    selector.warning("Task %r ran for %.3fs. It is blocking the event loop -- ...", "t", 1.2)
    assert "blocking the event loop" in capsys.readouterr().err
