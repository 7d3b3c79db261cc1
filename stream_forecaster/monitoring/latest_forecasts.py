"""The newest forecasts on the output topic, for the console view."""

from __future__ import annotations

import logging
import time
from collections import deque
from typing import Any

from stream_forecaster.kafka.clients import client_config, reachable
from stream_forecaster.settings import Settings
from stream_forecaster.wire.forecasts import Forecast

log = logging.getLogger(__name__)


class LatestForecasts:
    """The newest forecasts on the output topic, read from its end without a consumer group.

    Args:
        settings: the Kafka connection and the output topic.
        keep: how many forecasts to keep.
    """

    RETRY_S = 3.0

    def __init__(self, settings: Settings, keep: int) -> None:
        self.topic, self.config = settings.topics.output, client_config(settings.kafka)
        self.latest: deque[Forecast] = deque(maxlen=keep)
        self._consumer: Any = None
        self._retry_at, self._backoff = 0.0, self.RETRY_S

    def poll(self, budget_s: float = 0.2) -> None:
        """Read what was published since the last call, for about ``budget_s`` at most.

        Never raises: a missing topic or an unreachable broker is tried again later.
        """
        if time.monotonic() < self._retry_at:
            return
        try:
            if self._consumer is None and reachable(self.config["bootstrap_servers"]):
                self._consumer = self._connect()
            if self._consumer is not None and self._assigned():
                self._drain(budget_s)
                self._backoff = self.RETRY_S
                return
        except Exception:  # kafka-python raises many types; the view goes on regardless
            log.debug("cannot read topic %s", self.topic, exc_info=True)
            self.close()
            self._backoff = min(60.0, 2 * self._backoff)  # each failed client leaks a thread
        self._retry_at = time.monotonic() + self._backoff

    def _connect(self) -> Any:
        from kafka import KafkaConsumer

        return KafkaConsumer(
            **self.config,
            group_id=None,
            enable_auto_commit=False,
            isolation_level="read_committed",
            bootstrap_timeout_ms=2000,
            max_poll_records=5000,
        )

    def _assigned(self) -> bool:
        """Assign every partition of the topic, at its end, once it exists."""
        from kafka import TopicPartition

        if not self._consumer.assignment():
            partitions = self._consumer.partitions_for_topic(self.topic)
            if not partitions:  # not created yet
                return False
            self._consumer.assign([TopicPartition(self.topic, p) for p in sorted(partitions)])
            self._consumer.seek_to_end()
        return True

    def _drain(self, budget_s: float) -> None:
        deadline, records = time.monotonic() + budget_s, []
        while (left_ms := int((deadline - time.monotonic()) * 1000)) > 0:
            polled = self._consumer.poll(timeout_ms=left_ms)
            if not polled:
                break
            records += [r for batch in polled.values() for r in batch]
        records.sort(key=lambda r: int(r.timestamp))
        for record in records[-(self.latest.maxlen or 1) :]:
            try:
                self.latest.append(Forecast.model_validate_json(record.value))
            except ValueError:  # not a forecast: skipped
                continue

    def newest(self) -> tuple[Forecast, ...]:
        """The forecasts kept, newest first."""
        return tuple(reversed(self.latest))

    def close(self) -> None:
        """Close the consumer; the next poll opens a new one."""
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None
