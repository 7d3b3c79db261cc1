"""A background check of the brokers: are they answering, and where do the input
partitions end?

It runs on its own thread with its own client, so it reports an outage even while the
main loop is blocked in a Kafka call (a transaction commit waits for the broker to come
back). Its end offsets feed the consumer-lag metric; each check's verdict goes to
``on_check`` (``sf_kafka_connected``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

from stream_forecaster.kafka.clients import client_config
from stream_forecaster.settings import Settings

log = logging.getLogger(__name__)


class BrokerProbe:
    """Asks the brokers for the input topic's end offsets every ``interval_s``.

    Args:
        settings: the service settings (cluster and input topic).
        partitions: the input topic's partition count.
        on_check: told after every check whether the brokers answered.
        interval_s: seconds between checks.
    """

    def __init__(
        self,
        settings: Settings,
        partitions: int,
        on_check: Callable[[bool], None] = lambda _answering: None,
        interval_s: float = 1.0,
    ) -> None:
        self.on_check = on_check
        self.interval_s = interval_s
        self.timeout_ms = max(1000, int(interval_s * 2000))
        self.partitions = [TopicPartition(settings.topics.input, p) for p in range(partitions)]
        self.end_offsets: dict[TopicPartition, int] = {}
        self.connected = True
        self._client_config = {
            **client_config(settings.kafka),
            "client_id": f"{settings.kafka.client_id}-probe",
            "group_id": None,
            "enable_auto_commit": False,
        }
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="broker-probe", daemon=True)

    def start(self) -> BrokerProbe:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self.timeout_ms / 1000 + 2)

    def _run(self) -> None:
        client: Any = None
        while client is None and not self._stop.is_set():
            try:
                client = KafkaConsumer(**self._client_config)
            except KafkaError as exc:  # e.g. NoBrokersAvailable
                self._set(connected=False)
                log.warning("broker probe cannot connect: %r", exc)
                self._stop.wait(self.interval_s)
        if client is None:
            return
        try:
            while not self._stop.is_set():
                self.check(client)
                self._stop.wait(self.interval_s)
        finally:
            client.close(autocommit=False)

    def check(self, client: Any) -> bool:
        """One round trip; returns whether the brokers answered."""
        try:
            ends = client.end_offsets(self.partitions, timeout_ms=self.timeout_ms)
        except (KafkaError, AssertionError, ValueError) as exc:
            if self.connected:
                log.warning("Kafka brokers do not answer: %r", exc)
            self._set(connected=False)
            return False
        self.end_offsets = dict(ends)
        if not self.connected:
            log.info("Kafka brokers answer again")
        self._set(connected=True)
        return True

    def _set(self, *, connected: bool) -> None:
        self.connected = connected
        self.on_check(connected)
