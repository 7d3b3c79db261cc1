"""The delivery guarantee, chosen once: how a processed batch reaches Kafka and when its
offsets are committed.

Both guarantees stand behind one small interface (:class:`Delivery`), which the serve loop
calls without knowing which one it has:

- :class:`AtLeastOnce`: forecasts and dead letters are sent as soon as a batch is
  processed; a checkpoint (the changelog of the windows changed, then the offsets) begins
  every ``SF_PROCESSING__COMMIT_INTERVAL_MS`` and moves forward between polls
  (:mod:`stream_forecaster.serving.checkpoint` has the order and why).
- :class:`ExactlyOnce`: every batch is one Kafka transaction: its forecasts, dead letters,
  changelog and offsets commit together or not at all (a transaction must not span a poll,
  in which a rebalance may move its partitions to another instance).

A failure that the client's own retries did not cure surfaces as
:class:`~stream_forecaster.serving.checkpoint.PublishError` (or a ``KafkaError``), which
the loop hands to :class:`~stream_forecaster.serving.recovery.Recovery`; it calls
:meth:`Delivery.restart`.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Collection, Mapping
from typing import Protocol

from kafka import TopicPartition
from kafka.errors import CommitFailedError, KafkaError
from kafka.structs import OffsetAndMetadata

from stream_forecaster.kafka import transactions
from stream_forecaster.kafka.protocols import Consumer, Offsets, Producer, SendFuture
from stream_forecaster.serving.batch import BatchOutput
from stream_forecaster.serving.checkpoint import CheckpointInFlight, PendingCheckpoint, PublishError
from stream_forecaster.serving.recorder import ServeRecorder
from stream_forecaster.settings import Settings
from stream_forecaster.wire.records import OutputRecord

log = logging.getLogger(__name__)

#: The changelog records of a key (key -> input partition): the snapshots to write.
Changelog = Callable[[Mapping[str, int]], list[OutputRecord]]
#: Changelog records a checkpoint in flight sends per turn of the loop.
CHANGELOG_SLICE = 128


class Delivery(Protocol):
    """What the serve loop asks of a delivery guarantee."""

    def deliver(self, out: BatchOutput) -> None:
        """Send a processed batch (and, with exactly_once, commit it)."""

    def tombstones(self, records: list[OutputRecord]) -> None:
        """Delete the changelog entries of evicted keys."""

    def checkpoint(self) -> None:
        """Move a checkpoint forward, without waiting (between polls)."""

    def finish(self) -> None:
        """Land everything delivered so far, waiting (before closing)."""

    def drop_partitions(self, partitions: Collection[int]) -> None:
        """Input partitions were revoked: nothing more is committed for them."""

    def before_revoke(self) -> None:
        """Partitions are about to go (client thread): what is in flight must land."""

    def restart(self) -> None:
        """Start afresh after a failure (or at start-up): a new producer, nothing
        pending."""

    def close(self) -> None:
        """Close the producer."""


class Sender:
    """Sends output records with the current producer; counts acknowledged forecasts and
    failed dead letters.

    Args:
        new_producer: makes a producer (called at every :meth:`renew`).
        dead_letter_topic: records to it are counted when they fail.
        metrics: the recorder.
        timeout_s: the longest :meth:`flush`.
    """

    def __init__(
        self,
        new_producer: Callable[[], Producer],
        dead_letter_topic: str,
        metrics: ServeRecorder,
        timeout_s: float,
    ) -> None:
        self._new_producer = new_producer
        self._dead_letter_topic = dead_letter_topic
        self._metrics = metrics
        self.timeout_s = timeout_s
        self.producer: Producer | None = None

    def renew(self) -> Producer:
        """Close the current producer (without waiting) and make a new one."""
        self.close(timeout_s=0)
        self.producer = self._new_producer()
        return self.producer

    def send(self, record: OutputRecord) -> SendFuture:
        assert self.producer is not None, "renew() makes the producer"
        future = self.producer.send(
            record.topic,
            key=record.key,
            value=record.value,
            headers=record.headers or None,
            partition=record.partition,
        )
        if record.source_timestamp_ms is not None:  # a forecast
            future.add_callback(self._acked, record.source_timestamp_ms)
        elif record.topic == self._dead_letter_topic:
            future.add_errback(lambda _exc: self._metrics.dead_letter_failed())
        return future

    def _acked(self, source_timestamp_ms: int, _metadata: object) -> None:
        self._metrics.forecast_acked(source_timestamp_ms)

    def flush(self) -> None:
        """Wait until everything sent is acknowledged (or failed: the futures say).

        Raises:
            PublishError: the flush timed out or failed (offsets must not be committed).
        """
        assert self.producer is not None, "renew() makes the producer"
        try:
            self.producer.flush(timeout=self.timeout_s)
        except KafkaError as exc:
            raise PublishError(f"flushing the producer failed: {exc!r}") from exc

    def close(self, timeout_s: float = 3) -> None:
        if self.producer is not None:
            with contextlib.suppress(Exception):  # a failed producer may fail to close
                self.producer.close(timeout=timeout_s)
            self.producer = None


class AtLeastOnce:
    """at_least_once: send at once, checkpoint every commit interval, never wait for it.

    Args:
        sender: sends the records.
        consumer: commits the offsets.
        input_topic: the topic whose offsets are committed.
        changelog: the changelog records of changed keys (snapshots, taken when asked).
        metrics: the recorder.
        commit_interval_s: how often a checkpoint begins.
        clock: monotonic seconds.
    """

    def __init__(
        self,
        sender: Sender,
        consumer: Consumer,
        *,
        input_topic: str,
        changelog: Changelog,
        metrics: ServeRecorder,
        commit_interval_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sender = sender
        self.consumer = consumer
        self.input_topic = input_topic
        self.changelog = changelog
        self.metrics = metrics
        self.commit_interval_s = commit_interval_s
        self.clock = clock
        self.pending = PendingCheckpoint()
        self.in_flight: CheckpointInFlight | None = None

    def deliver(self, out: BatchOutput) -> None:
        futures = [self.sender.send(r) for r in out.forecasts]
        futures += [self.sender.send(r) for r in out.dead_letters]
        self.pending.add(out, futures, self.clock())

    def tombstones(self, records: list[OutputRecord]) -> None:
        self.pending.add_tombstones(records, self.clock())

    def checkpoint(self) -> None:
        """Begin a checkpoint when one is due; move the one in flight a step forward,
        committing its offsets once its records are all acknowledged.

        Raises:
            PublishError: a record was not published, or the checkpoint was not
                acknowledged within the request timeout.
        """
        if self.in_flight is None:
            if not self.pending.due(self.clock(), self.commit_interval_s):
                return
            self.in_flight = self._begin()
        in_flight = self.in_flight
        age = self.clock() - in_flight.started
        if in_flight.advance(self.sender.send, CHANGELOG_SLICE):
            self.in_flight = None
            self._commit(in_flight)
        elif age > self.sender.timeout_s:
            raise PublishError(f"a checkpoint was not acknowledged within {age:.0f}s")

    def finish(self) -> None:
        """Land the checkpoint in flight and one of everything since, waiting for each."""
        for in_flight in (self.in_flight, self._begin() if self.pending else None):
            if in_flight is None:
                continue
            self.in_flight = in_flight
            in_flight.finish(self.sender.send, self.sender.flush)
            self.in_flight = None
            self._commit(in_flight)

    def drop_partitions(self, partitions: Collection[int]) -> None:
        self.pending.drop_partitions(self.input_topic, partitions)
        if self.in_flight is not None:
            self.in_flight.drop_partitions(self.input_topic, partitions)

    def before_revoke(self) -> None:
        """The changelog in flight must land before the partitions' next owner restores
        from it (their offsets then stay uncommitted: at least once)."""
        if self.in_flight is None or self.sender.producer is None:
            return
        with contextlib.suppress(PublishError):  # the checkpoint in flight will say so
            self.sender.flush()

    def restart(self) -> None:
        self.pending = PendingCheckpoint()  # all of it is processed again
        self.in_flight = None
        self.sender.renew()

    def close(self) -> None:
        self.sender.close()

    def _begin(self) -> CheckpointInFlight:
        """The checkpoint of everything since the last one, with the snapshots of the
        windows changed since then taken now."""
        pending, self.pending = self.pending, PendingCheckpoint()
        changelog = self.changelog(pending.changed) + pending.tombstones
        return CheckpointInFlight(pending, changelog, started=self.clock())

    def _commit(self, checkpoint: CheckpointInFlight) -> None:
        """Commit the offsets of a checkpoint whose records are all acknowledged."""
        self.metrics.snapshots_written(checkpoint.n_changelog)
        if not checkpoint.offsets:
            return
        try:
            self.consumer.commit(
                kafka_offsets(checkpoint.offsets), timeout_ms=int(self.sender.timeout_s * 1000)
            )
            self.metrics.committed()
        except (CommitFailedError, KafkaError) as exc:
            # A rebalance took the partitions: their new owner redelivers (at least once).
            self.metrics.commit_failed()
            log.warning("offset commit failed (records will be redelivered): %s", exc)


class ExactlyOnce:
    """exactly_once: each batch's forecasts, dead letters, changelog and offsets in one
    transaction.

    Args:
        sender: sends the records; its producer is transactional.
        consumer: gives the group metadata that fences a stale member's commit.
        changelog: the changelog records of changed keys.
        metrics: the recorder.
        stop: set at shutdown: a transactional call waiting for the brokers gives up.
    """

    def __init__(
        self,
        sender: Sender,
        consumer: Consumer,
        changelog: Changelog,
        metrics: ServeRecorder,
        stop: threading.Event | None = None,
    ) -> None:
        self.sender = sender
        self.consumer = consumer
        self.changelog = changelog
        self.metrics = metrics
        self.stop = stop or threading.Event()

    def deliver(self, out: BatchOutput) -> None:
        self._transact(
            [*out.forecasts, *out.dead_letters], self.changelog(out.changed), out.offsets
        )

    def tombstones(self, records: list[OutputRecord]) -> None:
        if records:
            self._transact([], records, {})

    def checkpoint(self) -> None:
        """Nothing to do: each batch committed itself."""

    def finish(self) -> None:
        """Nothing to do: each batch committed itself."""

    def drop_partitions(self, partitions: Collection[int]) -> None:
        """Nothing to do: nothing is pending between batches."""

    def before_revoke(self) -> None:
        """Nothing to do: nothing is in flight between batches."""

    def restart(self) -> None:
        """A new transactional producer; its ``init_transactions`` aborts the transaction
        that a previous producer with this id left open."""
        self.sender.renew().init_transactions()

    def close(self) -> None:
        self.sender.close()

    def _transact(
        self,
        output: list[OutputRecord],
        changelog: list[OutputRecord],
        offsets: Mapping[tuple[str, int], int],
    ) -> None:
        producer = self.sender.producer
        assert producer is not None, "restart() makes the producer"
        try:
            producer.begin_transaction()
            futures = [self.sender.send(record) for record in output]
            futures += [self.sender.send(record) for record in changelog]
            self.metrics.snapshots_written(len(changelog))
            timeout_s, stop = transactions.TRANSACTION_WAIT_S, self.stop
            if offsets:
                group = self.consumer.group_metadata()
                transactions.send_offsets(
                    producer, kafka_offsets(offsets), group, timeout_s=timeout_s, stop=stop
                )
            transactions.commit(producer, timeout_s=timeout_s, stop=stop)
        except KafkaError as exc:
            self.metrics.commit_failed()
            with contextlib.suppress(KafkaError):
                transactions.abort(
                    producer, timeout_s=transactions.TRANSACTION_WAIT_S, stop=self.stop
                )
            raise PublishError(f"transaction failed and was aborted: {exc!r}") from exc
        # A commit flushes every record first, so each one has its answer by now. One that
        # failed means the brokers aborted the transaction although commit_transaction
        # returned: kafka-python 3.0.12 does so when it bumps its epoch mid-transaction.
        lost = [f for f in futures if not f.is_done or f.failed()]
        if lost:
            self.metrics.commit_failed()
            raise PublishError(
                f"{len(lost)} of the transaction's {len(futures)} records were not written "
                "although its commit returned: the transaction was aborted"
            )
        self.metrics.committed()


def choose_delivery(
    settings: Settings,
    consumer: Consumer,
    changelog: Changelog,
    metrics: ServeRecorder,
    new_producer: Callable[[], Producer],
    *,
    stop: threading.Event | None = None,
) -> Delivery:
    """The delivery guarantee ``SF_PROCESSING__GUARANTEE`` names, chosen once.

    Args:
        settings: the guarantee, the topics, the commit interval and the request timeout.
        consumer: the group member (commits, group metadata).
        changelog: the changelog records of changed keys.
        metrics: the recorder.
        new_producer: makes a producer (transactional for ``exactly_once``).
        stop: set at shutdown (a transactional call waiting for the brokers gives up).
    """
    sender = Sender(
        new_producer,
        settings.topics.dead_letter,
        metrics,
        timeout_s=settings.kafka.request_timeout_ms / 1000,
    )
    if settings.processing.guarantee == "exactly_once":
        return ExactlyOnce(sender, consumer, changelog, metrics, stop)
    return AtLeastOnce(
        sender,
        consumer,
        input_topic=settings.topics.input,
        changelog=changelog,
        metrics=metrics,
        commit_interval_s=settings.processing.commit_interval_ms / 1000,
    )


def kafka_offsets(offsets: Mapping[tuple[str, int], int]) -> Offsets:
    """``{(topic, partition): offset}`` as the client's commit takes it."""
    return {
        TopicPartition(topic, partition): OffsetAndMetadata(offset, "", -1)
        for (topic, partition), offset in offsets.items()
    }
