"""Getting back to a consistent state after a failure the Kafka client's own retries did
not cure (the brokers down, a fence after a rebalance, a changelog restore that timed out).

In place, without a restart: a fresh producer (with ``exactly_once`` its
``init_transactions`` aborts the open transaction), the windows of every partition owned
reloaded from the changelog, and the consumer rewound to the committed offsets, so that
what failed is processed again. Attempts repeat with exponential back-off until Kafka
answers or serve is asked to stop. Nothing is lost, and with ``exactly_once`` nothing is
published twice.
"""

from __future__ import annotations

import logging
import threading

from kafka.errors import KafkaError

from stream_forecaster.kafka.protocols import Consumer
from stream_forecaster.serving.checkpoint import PublishError
from stream_forecaster.serving.delivery import Delivery
from stream_forecaster.serving.health import Health
from stream_forecaster.serving.partitions import PartitionState
from stream_forecaster.serving.recorder import ServeRecorder
from stream_forecaster.state.changelog import ChangelogError

log = logging.getLogger(__name__)

#: What the loop recovers from (anything else is a bug, and stops serve).
RECOVERABLE = (PublishError, ChangelogError, KafkaError)
#: What a recovery attempt may fail with, to be tried again (kafka-python raises the
#: others for a broker it lost mid-call).
_ATTEMPT_FAILURES = (KafkaError, ChangelogError, AssertionError, ValueError)
_FIRST_BACKOFF_S = 0.5
#: Short: an attempt that times out is retried, and a stop is noticed between attempts.
_COMMITTED_TIMEOUT_MS = 2000


class Recovery:
    """Recovers the loop from a failed delivery or restore.

    Args:
        delivery: restarted (a new producer, nothing pending).
        partitions: their windows reloaded.
        consumer: rewound to the committed offsets.
        health: reports not ready while recovering.
        metrics: the recorder.
        stop: ends the attempts.
        backoff_max_s: the longest pause between attempts.
    """

    def __init__(
        self,
        delivery: Delivery,
        partitions: PartitionState,
        consumer: Consumer,
        *,
        health: Health,
        metrics: ServeRecorder,
        stop: threading.Event,
        backoff_max_s: float,
    ) -> None:
        self.delivery = delivery
        self.partitions = partitions
        self.consumer = consumer
        self.health = health
        self.metrics = metrics
        self.stop = stop
        self.backoff_max_s = backoff_max_s

    def recover(self, error: Exception) -> None:
        """Recover from ``error``; returns once recovered, or once stop is set."""
        reason = "changelog" if isinstance(error, ChangelogError) else "checkpoint"
        self.health.recovering = True
        self.metrics.recovery(reason)
        log.warning("%s; recovering: reloading windows, rewinding to committed offsets", error)
        backoff, attempt = _FIRST_BACKOFF_S, 1
        while not self.stop.is_set():
            self.health.check_in()
            try:
                self._attempt()
            except _ATTEMPT_FAILURES as exc:
                self.metrics.kafka_error("recovery")
                log.warning("recovery attempt %d failed (%r); next in %.1fs", attempt, exc, backoff)
                self.stop.wait(backoff)
                backoff = min(backoff * 2, self.backoff_max_s)
                attempt += 1
                continue
            self.health.recovering = False
            log.info("recovered after %d attempt(s)", attempt)
            return

    def _attempt(self) -> None:
        self.delivery.restart()
        for tp in self.partitions.reload():
            committed = self.consumer.committed(tp, timeout_ms=_COMMITTED_TIMEOUT_MS)
            if committed is None:
                self.consumer.seek_to_beginning(tp)
            else:
                self.consumer.seek(tp, committed)
