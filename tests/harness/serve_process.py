"""Running ``stream-forecaster serve`` as a real process in integration tests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.harness.kafka_broker import free_port


@dataclass
class ServeProcess:
    """One ``serve`` process with its own settings (environment variables)."""

    bootstrap: str
    input_topic: str
    output_topic: str
    dead_letter_topic: str
    model_path: Path
    log_path: Path
    group_id: str = field(default_factory=lambda: f"sf-{uuid.uuid4().hex[:8]}")
    extra_env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    def env(self) -> dict[str, str]:
        clean = {k: v for k, v in os.environ.items() if not k.startswith("SF_")}
        return {
            **clean,
            "SF_KAFKA__BOOTSTRAP_SERVERS": self.bootstrap,
            "SF_TOPICS__INPUT": self.input_topic,
            "SF_TOPICS__OUTPUT": self.output_topic,
            "SF_TOPICS__DEAD_LETTER": self.dead_letter_topic,
            "SF_MODEL__PATH": str(self.model_path),
            "SF_METRICS__HOST": "127.0.0.1",
            "SF_METRICS__PORT": str(self.port),
            "SF_PROCESSING__GROUP_ID": self.group_id,
            "SF_PROCESSING__MODEL_POLL_S": "0.5",
            **self.extra_env,
        }

    def start(self) -> ServeProcess:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "stream_forecaster", "serve"],
            env=self.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        return self

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=2) as r:
                return int(r.status), r.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def wait_ready(self, timeout: float = 90) -> None:
        """Wait until /readyz answers 200 (polls the probe; there is no event to await)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_running()
            try:
                if self.get("/readyz")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"serve not ready after {timeout}s; log:\n{self.log_tail()}")

    def wait_log(self, text: str, timeout: float = 60) -> None:
        """Wait until the log holds ``text`` (polls the file; there is no event to await)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_running()
            if text in self.log_path.read_text(errors="replace"):
                return
            time.sleep(0.2)
        raise TimeoutError(f"no {text!r} in the log after {timeout}s:\n{self.log_tail()}")

    def metric(self, name: str, labels: dict[str, str] | None = None) -> float | None:
        from prometheus_client.parser import text_string_to_metric_families

        _, text = self.get("/metrics")
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and (labels or {}).items() <= sample.labels.items():
                    return float(sample.value)
        return None

    def wait_metric(
        self,
        name: str,
        value: float,
        labels: dict[str, str] | None = None,
        timeout: float = 60,
    ) -> None:
        """Wait until a metric reads ``value`` (polls /metrics; there is no event to await)."""
        deadline = time.monotonic() + timeout
        seen = None
        while time.monotonic() < deadline:
            self._check_running()
            try:
                seen = self.metric(name, labels)
            except OSError:
                seen = None
            if seen == value:
                return
            time.sleep(0.2)
        raise TimeoutError(f"{name} is {seen}, not {value}, after {timeout}s")

    def terminate(self, timeout: float = 10) -> tuple[int, float]:
        """SIGTERM; returns (exit status, seconds it took to exit)."""
        assert self.process is not None
        started = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        try:
            status = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.send_signal(signal.SIGUSR1)  # every thread's stack, into the log
            time.sleep(1)  # for the dump to be written; the process is killed right after
            self.kill()
            raise AssertionError(
                f"serve did not exit within {timeout}s of SIGTERM; log:\n{self.log_tail(200)}"
            ) from None
        return status, time.monotonic() - started

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait(timeout=10)

    def _check_running(self) -> None:
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(
                f"serve exited with {self.process.returncode}; log:\n{self.log_tail()}"
            )

    def log_tail(self, lines: int = 60) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


def forecasts(records: Iterable[Any]) -> list[dict[str, Any]]:
    return [json.loads(r.value) for r in records]
