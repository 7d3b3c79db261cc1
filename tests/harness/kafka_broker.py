"""The real local Kafka broker for integration tests, and per-test topics.

One broker per test session, started with ``deploy/kafka/kafka-local`` on free ports and a
temporary data folder, and stopped at the end. When ``SF_TEST_BOOTSTRAP`` is set, that
cluster is used instead and nothing is started.
"""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition

from stream_forecaster.kafka.topics import TopicSpec, ensure_topic
from stream_forecaster.settings import KafkaSettings

REPO = Path(__file__).resolve().parents[2]
KAFKA_LOCAL = REPO / "deploy" / "kafka" / "kafka-local"
START_TIMEOUT_S = 180


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class LocalBroker:
    """A kafka-local broker owned by the test session."""

    data_dir: Path
    port: int = field(default_factory=free_port)
    controller_port: int = field(default_factory=free_port)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _env(self) -> dict[str, str]:
        return {
            **os.environ,
            "KAFKA_LOCAL_PORT": str(self.port),
            "KAFKA_LOCAL_CONTROLLER_PORT": str(self.controller_port),
            "KAFKA_LOCAL_DATA": str(self.data_dir),
        }

    def start(self) -> str:
        result = subprocess.run(
            [str(KAFKA_LOCAL), "start"],
            env=self._env(),
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT_S,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"kafka-local start failed ({result.returncode}):\n{result.stderr[-4000:]}"
            )
        return result.stdout.strip().splitlines()[-1]

    def stop(self) -> None:
        subprocess.run(
            [str(KAFKA_LOCAL), "stop"],
            env=self._env(),
            timeout=60,
            check=False,
            capture_output=True,
        )


def create_topic(bootstrap: str, prefix: str, partitions: int = 1, **configs: str) -> str:
    """Create a uniquely named topic (the way serve creates its own) and wait until the
    broker reports its leaders."""
    return create_topic_named(bootstrap, f"{prefix}-{uuid.uuid4().hex[:10]}", partitions, **configs)


def create_topic_named(bootstrap: str, name: str, partitions: int = 1, **configs: str) -> str:
    """:func:`create_topic` with the name given."""
    ensure_topic(KafkaSettings(bootstrap_servers=bootstrap), TopicSpec(name, partitions, configs))
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="sf-tests")
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            described = admin.describe_topics([name])
            parts = described[0].get("partitions") or []
            if len(parts) == partitions and all(p.get("leader_id", -1) >= 0 for p in parts):
                return name
            time.sleep(0.05)  # polling the broker's metadata; there is no event to await
        raise TimeoutError(f"topic {name} has no leaders after 30 s")
    finally:
        admin.close()


def produce(bootstrap: str, topic: str, records: Iterable[tuple[bytes | None, bytes]]) -> int:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    n = 0
    for key, value in records:
        producer.send(topic, key=key, value=value)
        n += 1
    producer.flush(timeout=60)
    producer.close()
    return n


def consume(
    bootstrap: str,
    topic: str,
    expected: int,
    timeout: float = 120,
    isolation_level: str = "read_committed",
    settle_s: float = 0.0,
) -> list[Any]:
    """Read a topic from the start until ``expected`` records arrived (then ``settle_s``
    more seconds, to catch extras), or the timeout passed."""
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        isolation_level=isolation_level,
    )
    records: list[Any] = []
    deadline = time.monotonic() + timeout
    settle_until: float | None = None
    try:
        while time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=200).values():
                records.extend(batch)
            if len(records) >= expected:
                if settle_until is None:
                    settle_until = time.monotonic() + settle_s
                if time.monotonic() >= settle_until:
                    break
    finally:
        consumer.close()
    return records


def produce_paced(
    bootstrap: str,
    topic: str,
    items: list[tuple[bytes, bytes]],
    per_second: float,
    acked_after: list[float] | None = None,
) -> threading.Thread:
    """Produce ``items`` at a steady rate from a background thread (idempotent: in order
    and without duplicates even across a broker restart); join the thread to wait.
    ``acked_after``, if given, receives each record's seconds from send to acknowledgement.
    """

    def run() -> None:
        producer = KafkaProducer(
            bootstrap_servers=bootstrap, acks="all", linger_ms=5, enable_idempotence=True
        )
        started = time.monotonic()
        for i, (key, value) in enumerate(items):
            due = started + i / per_second
            if (delay := due - time.monotonic()) > 0:
                time.sleep(delay)  # pacing the feed, not waiting for an event
            sent = time.monotonic()
            future = producer.send(topic, key=key, value=value)
            if acked_after is not None:
                future.add_callback(lambda _md, t=sent: acked_after.append(time.monotonic() - t))
        producer.flush()
        producer.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def committed_offsets(bootstrap: str, group: str, topic: str, partitions: int) -> dict[int, int]:
    """The group's committed offset of each partition (0 where none)."""
    probe = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    try:
        return {p: probe.committed(TopicPartition(topic, p)) or 0 for p in range(partitions)}
    finally:
        probe.close()


def wait_all_committed(
    bootstrap: str, group: str, topic: str, partitions: int, total: int, timeout: float = 120
) -> None:
    """Wait until the group has committed ``total`` records of ``topic``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sum(committed_offsets(bootstrap, group, topic, partitions).values()) >= total:
            return
        time.sleep(0.5)  # polling the group's committed offsets
    raise TimeoutError(f"group {group} did not commit {total} records of {topic}")
