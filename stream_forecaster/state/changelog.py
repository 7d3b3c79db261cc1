"""The window changelog: a compacted topic holding the newest window snapshot of every key.

Partition ``p`` of the changelog mirrors partition ``p`` of the input topic: the instance
that owns input partition ``p`` is the only writer of changelog partition ``p``, and the
instance that is assigned ``p`` next restores the windows of ``p``'s keys from it before it
processes ``p``'s records. Snapshots are written at every checkpoint (inside the
transaction with ``exactly_once``), so the changelog always holds the windows as of the
committed input offsets (or newer, with ``at_least_once``: the replayed readings are then
recognised as duplicates and skipped).

A restore reads its partitions from the start to the high watermark measured when it
began, with ``read_committed``: it therefore waits until a crashed instance's open
transaction is aborted (at most the transaction timeout) and never sees aborted snapshots.
Its cost is one read of everything the compaction has not yet removed: about one snapshot
(``4 * window * n_features + 116`` bytes) per key, plus the uncompacted tail.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Collection
from typing import Any, Final

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaTimeoutError

from stream_forecaster.kafka.clients import client_config
from stream_forecaster.kafka.errors import ClusterError
from stream_forecaster.kafka.topics import TopicError, TopicSpec, ensure_topic
from stream_forecaster.settings import Settings

log = logging.getLogger(__name__)

# Compaction settles within minutes, so a restore reads little more than one snapshot per
# key; deleted keys (tombstones) disappear a day later.
TOPIC_CONFIG: Final = {
    "cleanup.policy": "compact",
    "segment.ms": str(10 * 60 * 1000),
    "segment.bytes": str(64 * 1024 * 1024),
    "min.cleanable.dirty.ratio": "0.2",
    "delete.retention.ms": str(24 * 3600 * 1000),
}
_PROGRESS_EVERY_S: Final = 2.0
#: The longest single request of a restore: it checks for a stop and its deadline between.
_ROUND_TIMEOUT_MS: Final = 1000


class ChangelogError(ClusterError):
    """The changelog topic is unusable (wrong partition count) or a restore timed out."""


def ensure_changelog_topic(settings: Settings, input_partitions: int) -> str:
    """Create the changelog topic when missing; check its partition count when present.

    Args:
        settings: the service settings (names the topic and the cluster).
        input_partitions: partitions of the input topic; the changelog must have as many.

    Returns:
        The changelog topic's name.

    Raises:
        ChangelogError: the topic exists with another partition count, or cannot be created.
    """
    topic = settings.changelog_topic()
    spec = TopicSpec(topic, input_partitions, TOPIC_CONFIG, purpose="changelog topic")
    try:
        found = ensure_topic(settings.kafka, spec)
    except TopicError as exc:
        raise ChangelogError(str(exc)) from None
    if found != input_partitions:
        raise ChangelogError(
            f"changelog topic {topic} has {found} partitions, expected {input_partitions} "
            f"(one per partition of {settings.topics.input}); delete it or set "
            "SF_STATE__CHANGELOG_TOPIC to a new name"
        )
    return topic


class ChangelogReader:
    """Reads the newest snapshot of every key in some changelog partitions.

    Args:
        settings: the service settings.
        stop: set, it ends a restore in progress (a ``ChangelogError``): shutting down does
            not wait for one.
    """

    def __init__(self, settings: Settings, stop: threading.Event | None = None) -> None:
        self.topic = settings.changelog_topic()
        self.timeout_s = settings.state.restore_timeout_s
        self.stop = stop or threading.Event()
        common: dict[str, Any] = {
            **client_config(settings.kafka),
            "group_id": None,
            "enable_auto_commit": False,
            "auto_offset_reset": "earliest",
        }
        self._consumer = KafkaConsumer(
            **common,
            isolation_level="read_committed",
            max_poll_records=100_000,
            fetch_max_bytes=64 * 1024 * 1024,
            max_partition_fetch_bytes=16 * 1024 * 1024,
        )
        # Only for the high watermarks: read_committed would report the last stable offset.
        self._watermarks = KafkaConsumer(**common, isolation_level="read_uncommitted")

    def read(self, partitions: Collection[int]) -> dict[int, dict[str, bytes]]:
        """The newest snapshot per key of each partition (keys deleted by a tombstone are
        absent).

        Raises:
            ChangelogError: the end was not reached within ``restore_timeout_s``, or
                :attr:`stop` was set.
        """
        tps = [TopicPartition(self.topic, p) for p in sorted(partitions)]
        result: dict[int, dict[str, bytes]] = {p: {} for p in partitions}
        if not tps:
            return result
        started = time.monotonic()
        targets = self._ends(tps, started)
        if not targets:
            return result
        consumer = self._consumer
        consumer.assign(list(targets))
        consumer.seek_to_beginning(*targets)
        next_report, read = started + _PROGRESS_EVERY_S, 0
        try:
            while remaining := [tp for tp in targets if _position(consumer, tp) < targets[tp]]:
                self._check(remaining, started)
                if time.monotonic() >= next_report:
                    total = sum(targets.values())
                    log.info("restoring windows: %d of up to %d changelog records", read, total)
                    next_report = time.monotonic() + _PROGRESS_EVERY_S
                read += _apply(consumer.poll(timeout_ms=200), result)
        finally:
            consumer.assign([])
        return result

    def _ends(self, tps: list[TopicPartition], started: float) -> dict[TopicPartition, int]:
        """The high watermark of each partition that holds records, asked in short rounds
        (so that a stop or the deadline is noticed while the brokers do not answer)."""
        while True:
            self._check(tps, started)
            try:
                ends = self._watermarks.end_offsets(tps, timeout_ms=_ROUND_TIMEOUT_MS)
            except KafkaTimeoutError:
                continue
            return {tp: end for tp, end in ends.items() if end and end > 0}

    def _check(self, remaining: list[TopicPartition], started: float) -> None:
        """Raise when asked to stop, or when the restore has taken too long."""
        if self.stop.is_set():
            raise ChangelogError("restoring the windows was interrupted: stopping")
        if time.monotonic() - started > self.timeout_s:
            raise ChangelogError(
                f"restoring {_names(remaining)} did not reach the end within "
                f"{self.timeout_s:.0f}s (SF_STATE__RESTORE_TIMEOUT_S); an open "
                "transaction of a crashed instance holds it until it times out"
            )

    def close(self) -> None:
        self._consumer.close(autocommit=False)
        self._watermarks.close(autocommit=False)


def _apply(polled: dict[Any, list[Any]], result: dict[int, dict[str, bytes]]) -> int:
    """Keep the newest snapshot of each key from ``polled`` (a tombstone deletes it);
    returns how many records were read."""
    read = 0
    for tp, records in polled.items():
        snapshots = result[tp.partition]
        read += len(records)
        for record in records:
            if record.key is None:
                continue
            key = record.key.decode()
            if record.value is None:
                snapshots.pop(key, None)
            else:
                snapshots[key] = record.value
    return read


def _position(consumer: Any, tp: TopicPartition) -> int:
    """The consumer's position in ``tp``; 0 while the brokers cannot tell it yet (a
    position without a deadline waits for them for good)."""
    position: int | None = consumer.position(tp, timeout_ms=_ROUND_TIMEOUT_MS)
    return 0 if position is None else position


def _names(partitions: Collection[TopicPartition]) -> str:
    return ", ".join(f"{tp.topic}[{tp.partition}]" for tp in partitions)
