"""What a benchmark runs on: the Kafka cluster (``SF_BENCH_BOOTSTRAP``, or a local broker
started for the run with ``deploy/kafka/kafka-local`` and stopped afterwards), new topics,
a feeder, and a real ``serve`` process probed through its ``/metrics`` and ``/readyz``.

The benchmarks use the installed package and the repository's scripts only (never the
test suite's helpers), so that they run from a checkout as ``python -m benchmarks``.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer, KafkaProducer
from prometheus_client.parser import text_string_to_metric_families

from stream_forecaster.kafka.topics import TopicSpec, ensure_topic
from stream_forecaster.model.untrained import untrained_bundle
from stream_forecaster.settings import KafkaSettings

REPO = Path(__file__).resolve().parents[1]
KAFKA_LOCAL = REPO / "deploy" / "kafka" / "kafka-local"
#: The benchmarks' model: 8 features, 24 readings per window (the founding design's shape).
FEATURES = 8
FEATURE_NAMES = tuple(f"f{i}" for i in range(FEATURES))
WINDOW = 24


@contextlib.contextmanager
def bench_bootstrap(report: Callable[[str], None]) -> Iterator[str]:
    """Yield a bootstrap address; a broker started here is stopped on exit."""
    external = os.environ.get("SF_BENCH_BOOTSTRAP")
    if external:
        yield external
        return
    env = {
        **os.environ,
        "KAFKA_LOCAL_PORT": str(_free_port()),
        "KAFKA_LOCAL_CONTROLLER_PORT": str(_free_port()),
        "KAFKA_LOCAL_DATA": tempfile.mkdtemp(prefix="sf-bench-kafka-"),
    }
    report("starting the local Kafka broker")
    started = subprocess.run(
        [str(KAFKA_LOCAL), "start"], env=env, capture_output=True, text=True, check=False
    )
    if started.returncode:
        raise RuntimeError(f"kafka-local start failed:\n{started.stderr[-4000:]}")
    try:
        yield started.stdout.strip().splitlines()[-1]
    finally:
        subprocess.run([str(KAFKA_LOCAL), "stop"], env=env, capture_output=True, check=False)


def new_topic(bootstrap: str, prefix: str, partitions: int) -> str:
    """A new, uniquely named topic."""
    name = f"{prefix}-{uuid.uuid4().hex[:10]}"
    ensure_topic(KafkaSettings(bootstrap_servers=bootstrap), TopicSpec(name, partitions))
    return name


def produce(bootstrap: str, topic: str, items: Sequence[tuple[bytes, bytes]]) -> None:
    """Send ``items`` (key, value) as fast as the producer goes, and wait for them."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    for key, value in items:
        producer.send(topic, key=key, value=value)
    producer.flush(timeout=120)
    producer.close()


def produce_paced(
    bootstrap: str,
    topic: str,
    items: Sequence[tuple[bytes, bytes]],
    per_second: float,
    acked_after: list[float] | None = None,
) -> threading.Thread:
    """Send ``items`` at a steady rate from a background thread (join it to wait);
    ``acked_after`` receives each record's seconds from send to acknowledgement."""

    def feed() -> None:
        producer = KafkaProducer(
            bootstrap_servers=bootstrap, acks="all", linger_ms=5, enable_idempotence=True
        )
        started = time.monotonic()
        for i, (key, value) in enumerate(items):
            if (delay := started + i / per_second - time.monotonic()) > 0:
                time.sleep(delay)  # the feed's pace is what is measured against
            sent = time.monotonic()
            future = producer.send(topic, key=key, value=value)
            if acked_after is not None:
                future.add_callback(lambda _md, t=sent: acked_after.append(time.monotonic() - t))
        producer.flush()
        producer.close()

    thread = threading.Thread(target=feed, name="bench-feeder", daemon=True)
    thread.start()
    return thread


def first_records(bootstrap: str, topic: str, n: int, timeout_s: float = 30) -> list[Any]:
    """The first ``n`` records of ``topic`` (fewer if the timeout passes first)."""
    consumer = KafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest"
    )
    records: list[Any] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(records) < n and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=200).values():
                records.extend(batch)
    finally:
        consumer.close()
    return records[:n]


class BenchServe:
    """A ``serve`` process on new input, output and dead-letter topics, serving an
    untrained seed LSTM (its only model); its log and model folder are in a new temporary
    folder (:attr:`work`).

    Args:
        bootstrap: the cluster.
        name: names the work folder.
        partitions: of the input and output topics.
        extra_env: more ``SF_`` settings.
    """

    def __init__(
        self, bootstrap: str, name: str, partitions: int, extra_env: dict[str, str]
    ) -> None:
        self.work = Path(tempfile.mkdtemp(prefix=f"sf-bench-{name}-"))
        models = self.work / "models"
        models.mkdir()
        untrained_bundle(FEATURE_NAMES, WINDOW, name="bench").save(models)
        self.input_topic = new_topic(bootstrap, "bench-in", partitions)
        self.output_topic = new_topic(bootstrap, "bench-out", partitions)
        self.port = _free_port()
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("SF_")},
            "SF_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
            "SF_TOPICS__INPUT": self.input_topic,
            "SF_TOPICS__OUTPUT": self.output_topic,
            "SF_TOPICS__DEAD_LETTER": new_topic(bootstrap, "bench-dlq", 1),
            "SF_MODEL__PATH": str(models),
            "SF_METRICS__HOST": "127.0.0.1",
            "SF_METRICS__PORT": str(self.port),
            "SF_PROCESSING__GROUP_ID": f"sf-bench-{uuid.uuid4().hex[:8]}",
            **extra_env,
        }
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> BenchServe:
        with (self.work / "serve.log").open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "stream_forecaster", "serve"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return self

    def wait_ready(self, timeout: float) -> None:
        """Wait until ``/readyz`` answers 200 (the probe is polled)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"serve exited; see {self.work / 'serve.log'}")
            with contextlib.suppress(OSError):
                if self._get("/readyz")[0] == 200:
                    return
            time.sleep(0.2)  # readiness has no event to wait on: the probe is polled
        raise TimeoutError(f"serve not ready after {timeout:.0f}s; see {self.work / 'serve.log'}")

    def metric(self, name: str, labels: dict[str, str] | None = None) -> float | None:
        """The value of one sample of ``/metrics``, or None."""
        for family in text_string_to_metric_families(self._get("/metrics")[1]):
            for sample in family.samples:
                if sample.name == name and (labels or {}).items() <= sample.labels.items():
                    return float(sample.value)
        return None

    def buckets(self, name: str = "sf_end_to_end_latency_seconds") -> dict[float, float]:
        """The cumulative bucket counts ``{le: count}`` of histogram ``name``."""
        out: dict[float, float] = {}
        for family in text_string_to_metric_families(self._get("/metrics")[1]):
            if family.name == name:
                for sample in family.samples:
                    if sample.name.endswith("_bucket"):
                        out[float(sample.labels["le"])] = sample.value
        return out

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def _get(self, path: str) -> tuple[int, str]:
        url = f"http://127.0.0.1:{self.port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return int(response.status), response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def quantile_between(q: float, before: dict[float, float], after: dict[float, float]) -> float:
    """The ``q`` quantile of what a histogram observed between two scrapes, as PromQL's
    ``histogram_quantile`` over the bucket increases gives it; NaN when nothing was."""
    from stream_forecaster.monitoring.quantiles import histogram_quantile

    increase = {le: count - before.get(le, 0.0) for le, count in after.items()}
    value = histogram_quantile(q, increase)
    return float("nan") if value is None else value
