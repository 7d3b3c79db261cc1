"""serve's main loop: poll -> assignment changes -> process -> deliver -> checkpoint ->
housekeeping, one turn per poll.

Every step delegates: the windows follow the assignment in
:class:`~stream_forecaster.serving.partitions.PartitionState`, a batch is processed by the
:class:`~stream_forecaster.serving.pipeline.BatchProcessor`, delivered and checkpointed by
the guarantee chosen at start-up (:mod:`stream_forecaster.serving.delivery`), and a
failure is recovered from in place by :class:`~stream_forecaster.serving.recovery.Recovery`.
Housekeeping, between two polls: idle keys evicted, the consumer lag measured, a newer model
swapped in, the model folder looked at.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Final, Protocol

import numpy as np
from kafka.errors import AuthorizationError, KafkaError

from stream_forecaster.kafka.protocols import Consumer, Partition
from stream_forecaster.serving.delivery import Delivery
from stream_forecaster.serving.engine import InferenceEngine
from stream_forecaster.serving.health import Health
from stream_forecaster.serving.partitions import Assignment, PartitionState
from stream_forecaster.serving.pipeline import BatchProcessor
from stream_forecaster.serving.recorder import ServeRecorder
from stream_forecaster.serving.recovery import RECOVERABLE, Recovery
from stream_forecaster.settings import ProcessingSettings, Settings
from stream_forecaster.state.changelog import ChangelogReader
from stream_forecaster.wire.records import InputRecord

log = logging.getLogger(__name__)

LAG_EVERY_S: Final = 1.0
EVICT_EVERY_S: Final = 30.0
#: Poll timeout while no partition is assigned (joining, rebalancing): there is nothing to
#: be quick for, and longer polls give the group protocol room to finish.
_IDLE_POLL_MS: Final = 200


class ModelSupply(Protocol):
    """Where newer models come from (serve's is a
    :class:`~stream_forecaster.serving.model_intake.ModelIntake`)."""

    def take(self) -> InferenceEngine | None: ...


class ServeLoop:
    """One serve process's loop over the input topic.

    Args:
        consumer: the group member on the input topic (subscribed).
        processor: turns records into forecasts and keeps the windows.
        delivery: the delivery guarantee.
        partitions: the windows of the partitions owned.
        recovery: recovers from a failed delivery or restore.
        models: newer models, swapped in between batches.
        processing: poll size and wait.
        health: told of every turn and poll.
        metrics: the recorder.
        stop: set it to stop after the turn in progress.
        end_offsets: the input partitions' end offsets (the broker probe's), for the lag.
        clock: monotonic seconds.
    """

    def __init__(
        self,
        consumer: Consumer,
        processor: BatchProcessor,
        delivery: Delivery,
        partitions: PartitionState,
        recovery: Recovery,
        *,
        models: ModelSupply,
        processing: ProcessingSettings,
        health: Health,
        metrics: ServeRecorder,
        stop: threading.Event,
        end_offsets: Callable[[], Mapping[Partition, int]] = dict,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.consumer = consumer
        self.processor = processor
        self.delivery = delivery
        self.partitions = partitions
        self.recovery = recovery
        self.models = models
        self.processing = processing
        self.health = health
        self.metrics = metrics
        self.stop = stop
        self.end_offsets = end_offsets
        self.clock = clock
        self._next_lag = self._next_evict = clock()

    @classmethod
    def assemble(
        cls,
        settings: Settings,
        consumer: Consumer,
        processor: BatchProcessor,
        delivery: Delivery,
        *,
        assignment: Assignment,
        changelog: ChangelogReader | None,
        models: ModelSupply,
        health: Health,
        metrics: ServeRecorder,
        stop: threading.Event,
        end_offsets: Callable[[], Mapping[Partition, int]] = dict,
    ) -> ServeLoop:
        """The loop and its parts: the windows following ``assignment`` (restored from
        ``changelog``, when there is one), and the recovery of ``delivery``."""
        partitions = PartitionState(
            assignment, processor, changelog, delivery.drop_partitions, metrics
        )
        recovery = Recovery(
            delivery,
            partitions,
            consumer,
            health=health,
            metrics=metrics,
            stop=stop,
            backoff_max_s=settings.state.retry_backoff_max_s,
        )
        return cls(
            consumer,
            processor,
            delivery,
            partitions,
            recovery,
            models=models,
            processing=settings.processing,
            health=health,
            metrics=metrics,
            stop=stop,
            end_offsets=end_offsets,
        )

    def run(self) -> None:
        """Turn until :attr:`stop` is set; then land what was delivered."""
        while not self.stop.is_set():
            records = self._poll()
            try:
                self.partitions.follow()
                if records:
                    self._process(records)
                self._evict_idle()
                self.delivery.checkpoint()
            except RECOVERABLE as error:
                if isinstance(error, AuthorizationError):
                    raise  # a missing ACL does not heal by retrying: one line, exit 1
                self.recovery.recover(error)
                continue
            self._housekeeping()
        self._finish()

    def _poll(self) -> list[InputRecord]:
        assigned = self.partitions.assignment.partitions
        wait_ms = self.processing.max_wait_ms if assigned else _IDLE_POLL_MS
        polled = self.consumer.poll(timeout_ms=wait_ms or 1, max_records=self.processing.max_batch)
        self.health.polled()
        records = [r for batch in polled.values() for r in batch]
        stamps = np.fromiter((r.timestamp for r in records), dtype=np.float64, count=len(records))
        self.metrics.polled(stamps)
        return records

    def _process(self, records: Sequence[InputRecord]) -> None:
        started = time.perf_counter()
        out = self.processor.process(records)
        self.delivery.deliver(out)
        self.metrics.batch(out.report, self.processor.scorer, time.perf_counter() - started)

    def _evict_idle(self) -> None:
        now = self.clock()
        if now < self._next_evict:
            return
        self._next_evict = now + EVICT_EVERY_S
        eviction = self.processor.evict_idle()
        if eviction.keys:
            self.metrics.keys(self.processor.active_keys, evicted=eviction.keys)
        self.delivery.tombstones(eviction.tombstones)

    def _housekeeping(self) -> None:
        now = self.clock()
        if now >= self._next_lag:
            self._next_lag = now + LAG_EVERY_S
            self._update_lag()
        engine = self.models.take()
        if engine is not None:
            use_engine(self.processor, engine, self.metrics)

    def _update_lag(self) -> None:
        """Lag of every assigned partition: the probe's end offset minus our position."""
        ends = self.end_offsets()
        for tp in list(self.partitions.assignment.partitions):
            try:
                position = self.consumer.position(tp, timeout_ms=100)
            except (KafkaError, AssertionError, ValueError):
                continue
            end = ends.get(tp)
            if end is not None and position is not None:
                self.metrics.lag(tp.topic, tp.partition, max(end - position, 0))

    def _finish(self) -> None:
        """The last checkpoint (not after a recovery that did not finish: what it left is
        processed again after a restart)."""
        if self.health.recovering:
            return
        try:
            self.delivery.finish()
        except RECOVERABLE as exc:
            log.warning("last checkpoint failed (redelivered after restart): %s", exc)


def use_engine(processor: BatchProcessor, engine: InferenceEngine, metrics: ServeRecorder) -> None:
    """Serve ``engine`` from the next batch on (between batches: no record is skipped, none
    waits for a build)."""
    previous = processor.engine.version if processor.engine else None
    processor.use_engine(engine)
    metrics.model_served(engine.bundle.manifest.name, engine.version)
    metrics.keys(processor.active_keys)
    log.info("serving model %s (was %s)", engine.version, previous or "none")
