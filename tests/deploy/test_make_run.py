"""`make run` (deploy/local/run_local.py) from nothing: forecasts flow within two minutes,
and Ctrl-C stops everything."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.harness.kafka_broker import REPO, free_port

pytestmark = pytest.mark.kafka


def test_run_shows_forecasts_within_two_minutes_and_stops_cleanly(
    kafka_bootstrap: str, new_topic: Callable[..., str], tmp_path: Path
) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("SF_")},
        "SF_KAFKA__BOOTSTRAP_SERVERS": kafka_bootstrap,
        "SF_TOPICS__INPUT": new_topic(3),
        "SF_TOPICS__OUTPUT": new_topic(3),
        "SF_TOPICS__DEAD_LETTER": new_topic(1),
        "SF_METRICS__PORT": str(free_port()),
        "SF_PROCESSING__GROUP_ID": f"make-run-{free_port()}",
        "SF_PROCESSING__MODEL_POLL_S": "1",
    }
    started = time.monotonic()
    run = subprocess.Popen(
        [
            sys.executable,
            str(REPO / "deploy" / "local" / "run_local.py"),
            "--models",
            str(tmp_path / "models"),
            "--duration",
            "300",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group: a failed test can stop all of it
    )
    lines: list[str] = []
    first_forecast = threading.Event()

    def read() -> None:
        assert run.stdout is not None
        for line in run.stdout:
            lines.append(line)
            if "watch: latest" in line:
                first_forecast.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert first_forecast.wait(timeout=120), "no forecast within 2 minutes:\n" + "".join(
            lines[-40:]
        )
        elapsed = time.monotonic() - started
        run.send_signal(signal.SIGINT)  # Ctrl-C
        assert run.wait(timeout=30) == 0
    finally:
        if run.poll() is None:  # the test failed before Ctrl-C worked: stop serve & co. too
            os.killpg(run.pid, signal.SIGKILL)
            run.wait(timeout=10)
    reader.join(timeout=5)
    output = "".join(lines)
    assert "training the bootstrap model" in output
    assert "forecasts/s" in output
    assert "retrain started" in output  # the retrainer runs in the main job too
    assert "==> stopped" in output
    assert elapsed < 120
    assert list((tmp_path / "models").glob("*.sfmodel"))
    with pytest.raises(ConnectionRefusedError):  # serve is gone: its port is closed
        socket.create_connection(("127.0.0.1", int(env["SF_METRICS__PORT"])), timeout=2)
