"""``stream-forecaster serve``: the Kafka loop around the batch processor.

Per poll: records in -> :class:`~stream_forecaster.pipeline.BatchProcessor` (validate,
windows, one batched inference) -> publish forecasts and dead letters -> flush -> commit
offsets -> metrics. The checkpoint order is quix-streams': produce -> flush producer ->
commit offsets. With ``exactly_once`` the forecasts, dead letters and offsets go into one
Kafka transaction instead.

Failure policy: a record that cannot be used goes to the dead-letter topic and the loop
goes on. A publish or transaction that fails after the client's own retries stops the
process with status 1 *before* its offsets are committed: the records are redelivered
to the restarted process (or to another group member), so nothing is lost.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from typing import Any

from kafka import TopicPartition
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.errors import CommitFailedError, KafkaError
from kafka.structs import OffsetAndMetadata

from stream_forecaster.engine import InferenceEngine
from stream_forecaster.http_server import HttpEndpoints
from stream_forecaster.kafka_io import make_consumer, make_producer, transactional_id
from stream_forecaster.metrics import ServiceMetrics
from stream_forecaster.model_source import ModelSource
from stream_forecaster.pipeline import BatchOutput, BatchProcessor
from stream_forecaster.records import OutputRecord
from stream_forecaster.settings import Settings

log = logging.getLogger(__name__)

_LAG_EVERY_S = 1.0
_EVICT_EVERY_S = 30.0
_ALIVE_WITHIN_S = 60.0
_POLLING_WITHIN_S = 30.0


class PublishError(RuntimeError):
    """Forecasts or dead letters could not be published; offsets were not committed."""


class _Assignment(ConsumerRebalanceListener):  # type: ignore[misc]
    """Tracks assigned partitions. Runs on the client's IO thread: no consumer calls here."""

    def __init__(self, metrics: ServiceMetrics) -> None:
        self.metrics = metrics
        self.partitions: set[TopicPartition] = set()

    def on_partitions_revoked(self, revoked: Any) -> None:
        self.partitions -= set(revoked)
        for tp in revoked:
            with contextlib.suppress(KeyError):  # no lag measured for it yet
                self.metrics.consumer_lag.remove(tp.topic, str(tp.partition))
        self.metrics.assigned_partitions.set(len(self.partitions))
        log.info("partitions revoked: %s", _names(revoked))

    def on_partitions_assigned(self, assigned: Any) -> None:
        self.partitions |= set(assigned)
        self.metrics.assigned_partitions.set(len(self.partitions))
        log.info("partitions assigned: %s", _names(assigned))


class ForecastService:
    """One ``serve`` process.

    Args:
        settings: the configuration.
        metrics: the metrics (on the registry ``/metrics`` exposes).
        stop: set it (e.g. from a SIGTERM handler) to stop after the batch in flight.
    """

    def __init__(self, settings: Settings, metrics: ServiceMetrics, stop: threading.Event) -> None:
        self.settings = settings
        self.metrics = metrics
        self.stop = stop
        self.processor = BatchProcessor(settings, metrics)
        self.models = ModelSource(settings.model, metrics)
        self.assignment = _Assignment(metrics)
        self.exactly_once = settings.processing.guarantee == "exactly_once"
        self._alive_at = time.monotonic()
        self._polled_at = 0.0
        self.http = HttpEndpoints(
            settings.metrics.host,
            settings.metrics.port,
            metrics.registry,
            alive=self._alive,
            ready=self._ready,
        )

    # -- probes ----------------------------------------------------------------------------

    def _alive(self) -> tuple[bool, str]:
        age = time.monotonic() - self._alive_at
        return age < _ALIVE_WITHIN_S, f"main loop checked in {age:.1f}s ago"

    def _ready(self) -> tuple[bool, str]:
        if self.processor.engine is None:
            return False, "no model loaded"
        if not self.assignment.partitions:
            return False, "no input partitions assigned"
        if time.monotonic() - self._polled_at > _POLLING_WITHIN_S:
            return False, "not polling the input topic"
        return True, f"serving model {self.processor.engine.version} on " + _names(
            self.assignment.partitions
        )

    # -- lifecycle -------------------------------------------------------------------------

    def run(self) -> int:
        """Serve until :attr:`stop` is set; returns the exit status."""
        self.http.start()
        try:
            if not self._wait_for_model():
                return 0
            return self._serve()
        finally:
            self.http.stop()

    def _wait_for_model(self) -> bool:
        self.metrics.model_loaded.set(0)
        while not self.stop.is_set():
            self._alive_at = time.monotonic()
            if self._swap_model_if_new():
                return True
            self.stop.wait(self.settings.processing.model_poll_s)
        return False

    def _swap_model_if_new(self) -> bool:
        bundle = self.models.poll()
        if bundle is None:
            return False
        try:
            engine = InferenceEngine(bundle, self.settings.processing.max_batch)
        except ValueError as exc:  # BundleError included
            self.metrics.model_load_failures.inc()
            log.error("cannot serve model %s: %s", bundle.version, exc)
            return False
        self.processor.use_engine(engine)
        self.metrics.set_model(bundle.manifest.name, bundle.version)
        return True

    def _serve(self) -> int:
        settings = self.settings
        producer = make_producer(settings)
        if self.exactly_once:
            producer.init_transactions()
            log.info("exactly_once: transactional id %s", transactional_id(settings))
        consumer = make_consumer(settings)
        if not self._wait_for_topic(consumer, settings.topics.input):
            consumer.close(autocommit=False)
            producer.close(timeout=3)
            return 0
        consumer.subscribe([settings.topics.input], listener=self.assignment)
        log.info(
            "serving %s -> %s (dead letters: %s), group %s, %s",
            settings.topics.input,
            settings.topics.output,
            settings.topics.dead_letter,
            settings.processing.group_id,
            settings.processing.guarantee,
        )
        status = 0
        next_lag = next_evict = next_model = time.monotonic()
        try:
            while not self.stop.is_set():
                # While no partition is assigned (joining, rebalancing) there is nothing to
                # be quick for: longer polls give the group protocol room to finish.
                wait_ms = settings.processing.max_wait_ms if self.assignment.partitions else 200
                polled = consumer.poll(
                    timeout_ms=wait_ms or 1, max_records=settings.processing.max_batch
                )
                now = time.monotonic()
                self._alive_at = self._polled_at = now
                self.metrics.last_poll_timestamp.set(time.time())
                records = [r for batch in polled.values() for r in batch]
                if records:
                    started = time.perf_counter()
                    self._handle(self.processor.process(records), consumer, producer)
                    self.metrics.batch_seconds.observe(time.perf_counter() - started)
                if now >= next_lag:
                    self._update_lag(consumer)
                    next_lag = now + _LAG_EVERY_S
                if now >= next_evict:
                    self.processor.evict_idle()
                    next_evict = now + _EVICT_EVERY_S
                if now >= next_model:
                    self._swap_model_if_new()
                    next_model = now + settings.processing.model_poll_s
        except PublishError as exc:
            log.error("%s; stopping without committing those offsets", exc)
            status = 1
        finally:
            log.info("shutting down: leaving the consumer group")
            consumer.close(autocommit=False, timeout_ms=3000)
            producer.close(timeout=3)
        log.info("stopped")
        return status

    def _wait_for_topic(self, consumer: Any, topic: str) -> bool:
        """Wait until the broker knows the input topic, so that the first group join sees
        its partitions; False if asked to stop first."""
        warned = False
        while not self.stop.is_set():
            self._alive_at = time.monotonic()
            try:
                if consumer.partitions_for_topic(topic):
                    return True
            except KafkaError as exc:
                log.debug("metadata for %s not available yet: %s", topic, exc)
            if not warned:
                log.warning("input topic %s not found; waiting for it to be created", topic)
                warned = True
            self.stop.wait(1.0)
        return False

    # -- one batch -------------------------------------------------------------------------

    def _handle(self, out: BatchOutput, consumer: Any, producer: Any) -> None:
        offsets = {
            TopicPartition(topic, partition): OffsetAndMetadata(offset, "", -1)
            for (topic, partition), offset in out.offsets.items()
        }
        if self.exactly_once:
            self._transact(out, offsets, consumer, producer)
            return
        self._publish(out, producer)
        try:
            consumer.commit(offsets)
            self.metrics.commits.inc()
        except (CommitFailedError, KafkaError) as exc:
            # A rebalance took the partitions: their new owner redelivers (at least once).
            self.metrics.commit_failures.inc()
            log.warning("offset commit failed (records will be redelivered): %s", exc)

    def _transact(
        self, out: BatchOutput, offsets: dict[Any, Any], consumer: Any, producer: Any
    ) -> None:
        try:
            producer.begin_transaction()
            self._publish(out, producer, flush=False)
            producer.send_offsets_to_transaction(offsets, consumer.group_metadata())
            producer.commit_transaction()
            self.metrics.commits.inc()
        except KafkaError as exc:
            self.metrics.commit_failures.inc()
            with contextlib.suppress(KafkaError):
                producer.abort_transaction()
            raise PublishError(f"transaction failed and was aborted: {exc!r}") from exc

    def _publish(self, out: BatchOutput, producer: Any, *, flush: bool = True) -> None:
        futures = [self._send(producer, r, forecast=True) for r in out.forecasts]
        futures += [self._send(producer, r, forecast=False) for r in out.dead_letters]
        if flush:
            try:
                producer.flush(timeout=self.settings.kafka.request_timeout_ms / 1000)
            except KafkaError as exc:
                raise PublishError(f"flushing {len(futures)} records failed: {exc!r}") from exc
            failed = [f.exception for f in futures if f.failed()]
            if failed or not all(f.is_done for f in futures):
                raise PublishError(
                    f"{len(failed)} of {len(futures)} records not published: {failed[0]!r}"
                    if failed
                    else "flush timed out"
                )

    def _send(self, producer: Any, record: OutputRecord, *, forecast: bool) -> Any:
        future = producer.send(
            record.topic, key=record.key, value=record.value, headers=record.headers or None
        )
        if forecast and record.source_timestamp_ms is not None:
            future.add_callback(self._acked, record.source_timestamp_ms)
        elif not forecast:
            future.add_errback(lambda _exc: self.metrics.dead_letters_failed.inc())
        return future

    def _acked(self, source_timestamp_ms: int, _metadata: Any) -> None:
        self.metrics.forecasts.inc()
        latency = time.time() - source_timestamp_ms / 1000
        self.metrics.end_to_end_seconds.observe(max(latency, 0.0))

    def _update_lag(self, consumer: Any) -> None:
        for tp in list(self.assignment.partitions):
            try:
                highwater = consumer.highwater(tp)
                position = consumer.position(tp, timeout_ms=100)
            except (KafkaError, AssertionError, ValueError):
                continue
            if highwater is not None and position is not None:
                self.metrics.consumer_lag.labels(tp.topic, str(tp.partition)).set(
                    max(highwater - position, 0)
                )


def _names(partitions: Any) -> str:
    return ", ".join(sorted(f"{tp.topic}[{tp.partition}]" for tp in partitions)) or "none"
