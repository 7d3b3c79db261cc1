"""`make run` (deploy/local/run_local.py) from nothing: forecasts flow within two minutes,
Ctrl-C stops everything, and a second run forecasts again within a minute."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest

from tests.harness.kafka_broker import REPO, free_port

pytestmark = pytest.mark.kafka


class Run:
    """One `make run`, until its first forecast of a reading it sent, and Ctrl-C.

    Args:
        env: its environment.
        models: its model folder.
    """

    def __init__(self, env: dict[str, str], models: Path) -> None:
        self.lines: list[str] = []
        self.first_forecast = threading.Event()
        self.started_s = time.time()
        self.process = subprocess.Popen(
            [
                sys.executable,
                str(REPO / "deploy" / "local" / "run_local.py"),
                *("--models", str(models), "--duration", "300"),
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # its own process group: a failed test can stop all of it
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)
            # Forecasts from readings this run sent: a backlog of an earlier run's readings
            # (stamped before this run) may come first.
            if "watch: latest" in line and _forecast_time(line) >= self.started_s - 1:
                self.first_forecast.set()

    def forecasts_within(self, timeout_s: float) -> float:
        """Seconds to the first such forecast the live view shows; fails after ``timeout_s``."""
        assert self.first_forecast.wait(timeout=timeout_s), (
            f"no forecast within {timeout_s:.0f} s:\n" + "".join(self.lines[-40:])
        )
        return time.time() - self.started_s

    def interrupt(self) -> str:
        """Ctrl-C; returns everything it printed."""
        try:
            self.process.send_signal(signal.SIGINT)
            assert self.process.wait(timeout=30) == 0
        finally:
            if self.process.poll() is None:  # Ctrl-C did not work: stop serve & co. too
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        self._reader.join(timeout=5)
        return "".join(self.lines)


def _forecast_time(line: str) -> float:
    """The time (epoch s) of the forecast in `watch: latest KEY TIME target=value ...`."""
    return datetime.fromisoformat(line.split("watch: latest ", 1)[1].split()[1]).timestamp()


def test_run_shows_forecasts_and_stops_cleanly_then_runs_again(
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
    models = tmp_path / "models"
    first = Run(env, models)
    try:
        assert first.forecasts_within(120) < 120
    finally:
        output = first.interrupt()
    assert "training the bootstrap model" in output
    assert "made the model signing key" in output  # signed by default: serve trusts its .pub
    (public,) = (tmp_path / "models-keys" / "trusted").glob("*.pub")
    assert list((tmp_path / "models-keys" / "signing").glob("*.key")) == [
        tmp_path / "models-keys" / "signing" / f"{public.stem}.key"
    ]
    bootstrap = min(models.glob("*.sfmodel"))  # the first one (retrain may have added more)
    sidecar = bootstrap.with_name(bootstrap.name + ".sig")
    assert sidecar.read_text().startswith(f"ed25519:{public.stem}:")
    assert "forecasts/s" in output
    assert "retrain started" in output  # the retrainer runs in the main job too
    assert "==> stopped" in output
    assert list(models.glob("*.sfmodel"))
    with pytest.raises(ConnectionRefusedError):  # serve is gone: its port is closed
        socket.create_connection(("127.0.0.1", int(env["SF_METRICS__PORT"])), timeout=2)

    # Again, on the same topics, windows restored from the first run's changelog: the
    # replay's readings are stamped as they are sent, so none is late against them.
    second = Run(env, models)
    try:
        assert second.forecasts_within(60) < 60
    finally:
        output = second.interrupt()
    assert "training the bootstrap model" not in output
    assert "made the model signing key" not in output  # the same key as the first run
    assert "==> stopped" in output
