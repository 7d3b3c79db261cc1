"""``stream-forecaster serve``: the Kafka loop around the batch processor.

Per poll: apply partition changes (restore the windows of newly assigned partitions from
the changelog, drop those of revoked ones) -> records in ->
:class:`~stream_forecaster.serving.pipeline.BatchProcessor` (validate, windows, one batched
inference) -> forecasts and dead letters sent -> the checkpoint in flight moved forward -> metrics.
The checkpoint order is quix-streams': the forecasts and dead letters acknowledged ->
the changelog of the windows changed since the last one produced -> acknowledged ->
offsets committed; one begins every ``SF_PROCESSING__COMMIT_INTERVAL_MS`` and the loop
does not wait for it (:mod:`stream_forecaster.serving.checkpoint`). With ``exactly_once`` each
batch is one Kafka transaction instead.

Failure policy: a record that cannot be used goes to the dead-letter topic and the loop
goes on. A checkpoint that fails after the client's own retries (broker down, fenced by a
rebalance) is recovered from in place, without a restart: a fresh producer (which, with
``exactly_once``, aborts the open transaction), the windows of every assigned partition
reloaded from the changelog, and the consumer rewound to the committed offsets; attempts
repeat with back-off until Kafka answers. Nothing is lost, and with ``exactly_once``
nothing is published twice.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from kafka import TopicPartition
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.errors import CommitFailedError, KafkaError
from kafka.structs import OffsetAndMetadata

from stream_forecaster.kafka.clients import make_consumer, make_producer, transactional_id
from stream_forecaster.kafka.probe import BrokerProbe
from stream_forecaster.model.folder import ModelSource
from stream_forecaster.model.topic import ModelFollower
from stream_forecaster.monitoring.http import HttpEndpoints
from stream_forecaster.monitoring.metrics import ServiceMetrics
from stream_forecaster.serving.checkpoint import CheckpointInFlight, PendingCheckpoint, PublishError
from stream_forecaster.serving.hot_swap import EngineBuilder
from stream_forecaster.serving.pipeline import BatchOutput, BatchProcessor
from stream_forecaster.settings.config import Settings
from stream_forecaster.state.changelog import (
    ChangelogError,
    ChangelogReader,
    ensure_changelog_topic,
)
from stream_forecaster.wire.records import OutputRecord

log = logging.getLogger(__name__)

_LAG_EVERY_S = 1.0
_EVICT_EVERY_S = 30.0
_ALIVE_WITHIN_S = 60.0
_POLLING_WITHIN_S = 30.0
#: Changelog records a checkpoint in flight sends per turn of the loop.
_CHANGELOG_SLICE = 128

__all__ = ["ForecastService", "PublishError"]


class _Assignment(ConsumerRebalanceListener):  # type: ignore[misc]
    """Tracks assigned partitions and flags changes for the main loop to act on (restores
    happen there). Runs on the client's IO thread: no consumer calls here."""

    def __init__(self, metrics: ServiceMetrics) -> None:
        self.metrics = metrics
        self.partitions: set[TopicPartition] = set()
        self.changed = threading.Event()
        #: Called before partitions go (the checkpoint in flight lands first).
        self.before_revoke: Callable[[], None] = lambda: None

    def on_partitions_revoked(self, revoked: Any) -> None:
        self.before_revoke()
        self.partitions -= set(revoked)
        self.changed.set()
        for tp in revoked:
            with contextlib.suppress(KeyError):  # no lag measured for it yet
                self.metrics.consumer_lag.remove(tp.topic, str(tp.partition))
        self.metrics.assigned_partitions.set(len(self.partitions))
        log.info("partitions revoked: %s", _names(revoked))

    def on_partitions_assigned(self, assigned: Any) -> None:
        self.partitions |= set(assigned)
        self.changed.set()
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
        self.models = ModelSource(settings.model, metrics, on_reject=self._bundle_rejected)
        self.builder = EngineBuilder(
            settings.processing.inference_threads,
            check=self.models.check_fits,
            on_failure=lambda _bundle, _exc: metrics.model_load_failures.inc(),
        )
        self.follower = ModelFollower(
            settings, on_bundle=self.builder.submit, on_reject=self._follower_rejected
        )
        self.assignment = _Assignment(metrics)
        self.exactly_once = settings.processing.guarantee == "exactly_once"
        self.changelog: ChangelogReader | None = None
        self.held: set[int] = set()  # input partitions whose windows are in the processor
        self.probe: BrokerProbe | None = None
        self.pending = PendingCheckpoint()
        self.in_flight: CheckpointInFlight | None = None
        self._producer: Any = None  # the current one, for before_revoke
        self.assignment.before_revoke = self._land_checkpoint_in_flight
        self._commit_interval_s = settings.processing.commit_interval_ms / 1000
        self._recovering = False
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
        if self.probe is not None and not self.probe.connected:
            return False, "Kafka brokers do not answer"
        if self._recovering:
            return False, "recovering from a failed checkpoint"
        if time.monotonic() - self._polled_at > _POLLING_WITHIN_S:
            return False, "not polling the input topic"
        return True, f"serving model {self.processor.engine.version} on " + _names(
            self.assignment.partitions
        )

    # -- lifecycle -------------------------------------------------------------------------

    def run(self) -> int:
        """Serve until :attr:`stop` is set; returns the exit status."""
        self.http.start()
        self.builder.start()
        self.follower.start()
        try:
            if not self._wait_for_model():
                return 0
            return self._serve()
        finally:
            self.follower.stop()
            self.builder.stop()
            self.http.stop()

    def _wait_for_model(self) -> bool:
        self.metrics.model_loaded.set(0)
        next_poll = time.monotonic()
        while not self.stop.is_set():
            self._alive_at = time.monotonic()
            if self._alive_at >= next_poll:
                self._poll_model_folder()
                next_poll = self._alive_at + self.settings.processing.model_poll_s
            if self._swap_if_ready():
                return True
            self.stop.wait(0.2)
        return False

    def _poll_model_folder(self) -> None:
        """A new bundle in the model folder goes to the engine builder (off this thread)."""
        bundle = self.models.poll()
        if bundle is not None:
            self.builder.submit(bundle)

    def _swap_if_ready(self) -> bool:
        """Serve the newest engine built in the background, if there is one (between
        batches: no record is skipped, none waits for a compile)."""
        engine = self.builder.take()
        if engine is None:
            return False
        previous = self.processor.engine.version if self.processor.engine else None
        self.processor.use_engine(engine)
        self.metrics.set_model(engine.bundle.manifest.name, engine.version)
        log.info("serving model %s (was %s)", engine.version, previous or "none")
        return True

    def _bundle_rejected(self, reason: str, detail: str) -> None:
        self.metrics.model_bundles_rejected.labels(reason=reason).inc()

    def _follower_rejected(self, reason: str, detail: str) -> None:
        self.metrics.model_load_failures.inc()
        self._bundle_rejected(reason, detail)

    def _serve(self) -> int:
        settings = self.settings
        producer = self._new_producer()
        consumer = make_consumer(settings)
        partitions = self._wait_for_topic(consumer, settings.topics.input)
        if not partitions:
            consumer.close(autocommit=False)
            producer.close(timeout=3)
            return 0
        if settings.state.changelog:
            topic = ensure_changelog_topic(settings, partitions)
            self.changelog = ChangelogReader(settings)
            log.info("windows are kept in changelog topic %s", topic)
        else:
            log.info("changelog off (SF_STATE__CHANGELOG=false): windows re-warm on restart")
        self.probe = BrokerProbe(settings, self.metrics, partitions).start()
        consumer.subscribe([settings.topics.input], listener=self.assignment)
        log.info(
            "serving %s -> %s (dead letters: %s), group %s, %s",
            settings.topics.input,
            settings.topics.output,
            settings.topics.dead_letter,
            settings.processing.group_id,
            settings.processing.guarantee,
        )
        # What exists by now (modules, the engine, the clients) lives as long as the
        # process: frozen, it is out of the cyclic collector's full passes. Measured on
        # the end-to-end benchmark: 24 full passes of up to 54 ms (1.0 s in all) before,
        # 25 of up to 11 ms (0.17 s) after; each held the loop, and the readings waited.
        gc.freeze()
        log.debug("%d objects frozen out of the cyclic garbage collector", gc.get_freeze_count())
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
                    self._observe_input_wait(records)
                try:
                    if self.assignment.changed.is_set():
                        self._follow_assignment()
                    if records:
                        started = time.perf_counter()
                        self._handle(self.processor.process(records), consumer, producer, now)
                        self.metrics.batch_seconds.observe(time.perf_counter() - started)
                    if now >= next_evict:
                        next_evict = now + _EVICT_EVERY_S
                        tombstones = self.processor.evict_idle()
                        if tombstones and self.exactly_once:
                            self._transact(BatchOutput(), consumer, producer, tombstones)
                        else:
                            self.pending.add_tombstones(tombstones, now)
                    self._advance_checkpoint(consumer, producer)
                except (PublishError, ChangelogError, KafkaError) as exc:
                    producer = self._recover(exc, consumer, producer)
                    continue
                if now >= next_lag:
                    self._update_lag(consumer)
                    next_lag = now + _LAG_EVERY_S
                self._swap_if_ready()
                if now >= next_model:
                    self._poll_model_folder()
                    next_model = now + settings.processing.model_poll_s
            if (self.pending or self.in_flight) and not self._recovering:
                try:
                    self._checkpoint_now(consumer, producer)
                except (PublishError, ChangelogError, KafkaError) as exc:
                    log.warning("last checkpoint failed (redelivered after restart): %s", exc)
        finally:
            log.info("shutting down: leaving the consumer group")
            consumer.close(autocommit=False, timeout_ms=3000)
            producer.close(timeout=3)
            self.probe.stop()
            if self.changelog is not None:
                self.changelog.close()
        log.info("stopped")
        return 0

    def _new_producer(self) -> Any:
        producer = make_producer(self.settings)
        if self.exactly_once:
            # Also aborts a transaction that a previous producer with this id left open.
            producer.init_transactions()
            log.info("exactly_once: transactional id %s", transactional_id(self.settings))
        self._producer = producer
        return producer

    def _wait_for_topic(self, consumer: Any, topic: str) -> int:
        """Wait until the broker knows the input topic, so that the first group join sees
        its partitions; returns its partition count, or 0 if asked to stop first."""
        warned = False
        while not self.stop.is_set():
            self._alive_at = time.monotonic()
            try:
                if partitions := consumer.partitions_for_topic(topic):
                    return len(partitions)
            except KafkaError as exc:
                log.debug("metadata for %s not available yet: %s", topic, exc)
            if not warned:
                log.warning("input topic %s not found; waiting for it to be created", topic)
                warned = True
            self.stop.wait(1.0)
        return 0

    # -- window state follows the partitions -----------------------------------------------

    def _follow_assignment(self) -> None:
        """Drop the windows of partitions no longer assigned; restore those of new ones.

        Partitions kept through a rebalance keep their windows: every batch was
        checkpointed before the poll in which the rebalance happened.
        """
        self.assignment.changed.clear()
        owned = {tp.partition for tp in list(self.assignment.partitions)}
        gone, new = self.held - owned, owned - self.held
        if gone:
            self.pending.drop_partitions(self.settings.topics.input, gone)
            if self.in_flight is not None:
                self.in_flight.drop_partitions(self.settings.topics.input, gone)
            dropped = self.processor.forget_partitions(gone)
            log.info("dropped the windows of %d keys of revoked partitions %s", dropped, gone)
        self.held -= gone
        if new:
            self._restore(new)

    def _restore(self, partitions: set[int]) -> None:
        if self.changelog is None:
            self.held |= partitions
            return
        started = time.perf_counter()
        by_partition = self.changelog.read(partitions)
        loaded = sum(self.processor.load_windows(p, s) for p, s in by_partition.items())
        elapsed = time.perf_counter() - started
        self.held |= partitions
        self.metrics.state_restore_seconds.observe(elapsed)
        self.metrics.state_restored_windows.inc(loaded)
        log.info(
            "restored the windows of %d keys of partitions %s in %.2fs",
            loaded,
            sorted(partitions),
            elapsed,
        )

    def _recover(self, error: Exception, consumer: Any, producer: Any) -> Any:
        """Get back to a consistent state after a failed checkpoint; returns the producer.

        A fresh producer (with ``exactly_once`` its ``init_transactions`` aborts the open
        transaction), the windows of every assigned partition reloaded from the changelog,
        and the consumer rewound to the committed offsets: the failed batch is processed
        again. Attempts repeat with exponential back-off until they succeed or stop is set.
        """
        reason = "changelog" if isinstance(error, ChangelogError) else "checkpoint"
        self._recovering = True
        self.metrics.kafka_recoveries.labels(reason=reason).inc()
        log.warning("%s; recovering: reloading windows, rewinding to committed offsets", error)
        with contextlib.suppress(Exception):
            producer.close(timeout=0)
        self.pending = PendingCheckpoint()  # all of it is processed again
        self.in_flight = None
        backoff, attempt = 0.5, 1
        while not self.stop.is_set():
            self._alive_at = time.monotonic()
            try:
                producer = self._new_producer()
                self.processor.forget_partitions(self.held)
                self.held.clear()
                self.assignment.changed.clear()
                owned = list(self.assignment.partitions)
                self._restore({tp.partition for tp in owned})
                for tp in owned:
                    committed = consumer.committed(tp, timeout_ms=10_000)
                    if committed is None:
                        consumer.seek_to_beginning(tp)
                    else:
                        consumer.seek(tp, committed)
                self._recovering = False
                log.info("recovered after %d attempt(s)", attempt)
                return producer
            except (KafkaError, ChangelogError, AssertionError, ValueError) as exc:
                self.metrics.kafka_errors.labels(operation="recovery").inc()
                log.warning("recovery attempt %d failed (%r); next in %.1fs", attempt, exc, backoff)
                with contextlib.suppress(Exception):
                    producer.close(timeout=0)
                self.stop.wait(backoff)
                backoff = min(backoff * 2, self.settings.state.retry_backoff_max_s)
                attempt += 1
        return producer

    # -- one batch -------------------------------------------------------------------------

    def _handle(self, out: BatchOutput, consumer: Any, producer: Any, now: float) -> None:
        """Send a processed batch; with ``exactly_once`` as one transaction, else pending
        the next checkpoint."""
        if self.exactly_once:
            self._transact(out, consumer, producer)
            return
        futures = [self._send(producer, r, forecast=True) for r in out.forecasts]
        futures += [self._send(producer, r, forecast=False) for r in out.dead_letters]
        self.pending.add(out, futures, now)  # the loop checkpoints when it is due

    def _advance_checkpoint(self, consumer: Any, producer: Any) -> None:
        """at_least_once: move the checkpoint in flight one step forward without waiting,
        committing its offsets once they are due; begin the next one when due."""
        if self.in_flight is None:
            if not self.pending.due(time.monotonic(), self._commit_interval_s):
                return
            self.in_flight = self._begin_checkpoint()
        in_flight = self.in_flight
        age = time.monotonic() - in_flight.started
        if in_flight.advance(lambda r: self._send(producer, r, forecast=False), _CHANGELOG_SLICE):
            self.in_flight = None
            self._commit(consumer, in_flight)
        elif age > self.settings.kafka.request_timeout_ms / 1000:
            raise PublishError(f"a checkpoint was not acknowledged within {age:.0f}s")

    def _checkpoint_now(self, consumer: Any, producer: Any) -> None:
        """at_least_once: land the checkpoint in flight and one of everything since,
        waiting for each (the last one, before closing)."""
        for in_flight in (self.in_flight, self._begin_checkpoint() if self.pending else None):
            if in_flight is None:
                continue
            self.in_flight = in_flight
            in_flight.finish(
                lambda r: self._send(producer, r, forecast=False), lambda: self._flush(producer)
            )
            self.in_flight = None
            self._commit(consumer, in_flight)

    def _begin_checkpoint(self) -> CheckpointInFlight:
        """The checkpoint of everything since the last one, with the snapshots of the
        windows changed since then taken now."""
        pending, self.pending = self.pending, PendingCheckpoint()
        changelog = self.processor.changelog(pending.changed) + pending.tombstones
        return CheckpointInFlight(pending, changelog, started=time.monotonic())

    def _land_checkpoint_in_flight(self) -> None:
        """Before partitions are revoked: the changelog in flight must land before their
        next owner restores from it (the offsets then stay uncommitted: at least once)."""
        if self.in_flight is None or self._producer is None:
            return
        with contextlib.suppress(PublishError):  # the checkpoint in flight will say so
            self._flush(self._producer)

    def _commit(self, consumer: Any, checkpoint: CheckpointInFlight) -> None:
        """Commit the offsets of a checkpoint whose records are all acknowledged."""
        self.metrics.state_snapshots_written.inc(checkpoint.n_changelog)
        if not checkpoint.offsets:
            return
        try:
            consumer.commit(
                _offsets(checkpoint.offsets), timeout_ms=self.settings.kafka.request_timeout_ms
            )
            self.metrics.commits.inc()
        except (CommitFailedError, KafkaError) as exc:
            # A rebalance took the partitions: their new owner redelivers (at least once).
            self.metrics.commit_failures.inc()
            log.warning("offset commit failed (records will be redelivered): %s", exc)

    def _transact(
        self,
        out: BatchOutput,
        consumer: Any,
        producer: Any,
        tombstones: list[OutputRecord] | None = None,
    ) -> None:
        """exactly_once: a batch's forecasts, dead letters, changelog and offsets in one
        transaction."""
        try:
            producer.begin_transaction()
            for record in out.forecasts:
                self._send(producer, record, forecast=True)
            for record in out.dead_letters:
                self._send(producer, record, forecast=False)
            changelog = self.processor.changelog(out.changed) + (tombstones or [])
            for record in changelog:
                self._send(producer, record, forecast=False)
            self.metrics.state_snapshots_written.inc(len(changelog))
            if out.offsets:
                producer.send_offsets_to_transaction(
                    _offsets(out.offsets), consumer.group_metadata()
                )
            producer.commit_transaction()
            self.metrics.commits.inc()
        except KafkaError as exc:
            self.metrics.commit_failures.inc()
            with contextlib.suppress(KafkaError):
                producer.abort_transaction()
            raise PublishError(f"transaction failed and was aborted: {exc!r}") from exc

    def _flush(self, producer: Any) -> None:
        """Wait until everything sent is acknowledged (or failed: the futures say).

        Raises:
            PublishError: the flush timed out or failed (offsets must not be committed).
        """
        try:
            producer.flush(timeout=self.settings.kafka.request_timeout_ms / 1000)
        except KafkaError as exc:
            raise PublishError(f"flushing the producer failed: {exc!r}") from exc

    def _send(self, producer: Any, record: OutputRecord, *, forecast: bool) -> Any:
        future = producer.send(
            record.topic,
            key=record.key,
            value=record.value,
            headers=record.headers or None,
            partition=record.partition,
        )
        if forecast and record.source_timestamp_ms is not None:
            future.add_callback(self._acked, record.source_timestamp_ms)
        elif record.topic == self.settings.topics.dead_letter:
            future.add_errback(lambda _exc: self.metrics.dead_letters_failed.inc())
        return future

    def _observe_input_wait(self, records: list[Any]) -> None:
        """How long the polled records were in Kafka and the client before serve had them
        (their timestamps are the producers'; a clock ahead of ours counts as 0)."""
        stamps = np.fromiter((r.timestamp for r in records), dtype=np.float64, count=len(records))
        waits = time.time() - stamps / 1000
        self.metrics.input_wait_seconds.observe_many(np.maximum(waits, 0.0))

    def _acked(self, source_timestamp_ms: int, _metadata: Any) -> None:
        self.metrics.forecasts.inc()
        latency = time.time() - source_timestamp_ms / 1000
        self.metrics.end_to_end_seconds.observe(max(latency, 0.0))

    def _update_lag(self, consumer: Any) -> None:
        """Lag of every assigned partition: the probe's end offset minus our position."""
        ends = self.probe.end_offsets if self.probe is not None else {}
        for tp in list(self.assignment.partitions):
            try:
                position = consumer.position(tp, timeout_ms=100)
            except (KafkaError, AssertionError, ValueError):
                continue
            end = ends.get(tp)
            if end is not None and position is not None:
                self.metrics.consumer_lag.labels(tp.topic, str(tp.partition)).set(
                    max(end - position, 0)
                )


def _names(partitions: Any) -> str:
    return ", ".join(sorted(f"{tp.topic}[{tp.partition}]" for tp in partitions)) or "none"


def _offsets(offsets: dict[tuple[str, int], int]) -> dict[TopicPartition, OffsetAndMetadata]:
    return {
        TopicPartition(topic, partition): OffsetAndMetadata(offset, "", -1)
        for (topic, partition), offset in offsets.items()
    }
