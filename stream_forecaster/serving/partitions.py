"""The windows follow the partitions: which input partitions this member owns, and the
windows of their keys dropped on revoke and restored from the changelog on assignment."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection
from typing import Any

from kafka.consumer.subscription_state import ConsumerRebalanceListener

from stream_forecaster.kafka.protocols import Partition, names
from stream_forecaster.serving.batch import Restored
from stream_forecaster.serving.pipeline import BatchProcessor
from stream_forecaster.serving.recorder import ServeRecorder
from stream_forecaster.state.changelog import ChangelogReader

log = logging.getLogger(__name__)


class Assignment(ConsumerRebalanceListener):  # type: ignore[misc]
    """Tracks the assigned partitions and flags changes for the loop to act on (restores
    happen there). Runs on the client's IO thread: no consumer calls here.

    Args:
        metrics: told the partition count after every change.
        before_revoke: called before partitions go (the checkpoint in flight lands first).
    """

    def __init__(
        self, metrics: ServeRecorder, before_revoke: Callable[[], None] = lambda: None
    ) -> None:
        self.metrics = metrics
        self.before_revoke = before_revoke
        self.partitions: set[Partition] = set()
        self.changed = threading.Event()

    def on_partitions_revoked(self, revoked: Any) -> None:
        self.before_revoke()
        self.partitions -= set(revoked)
        self.changed.set()
        self.metrics.partitions(len(self.partitions), [(tp.topic, tp.partition) for tp in revoked])
        log.info("partitions revoked: %s", names(revoked))

    def on_partitions_assigned(self, assigned: Any) -> None:
        self.partitions |= set(assigned)
        self.changed.set()
        self.metrics.partitions(len(self.partitions))
        log.info("partitions assigned: %s", names(assigned))


class PartitionState:
    """The windows held in the processor, kept in step with the assignment.

    Args:
        assignment: the partitions owned.
        processor: holds the windows.
        changelog: restores windows; ``None`` when the changelog is off (windows re-warm).
        on_drop: told the input partitions whose windows were dropped (a revoke).
        metrics: the recorder.
    """

    def __init__(
        self,
        assignment: Assignment,
        processor: BatchProcessor,
        changelog: ChangelogReader | None,
        on_drop: Callable[[Collection[int]], None],
        metrics: ServeRecorder,
    ) -> None:
        self.assignment = assignment
        self.processor = processor
        self.changelog = changelog
        self.on_drop = on_drop
        self.metrics = metrics
        self.held: set[int] = set()  # input partitions whose windows are in the processor

    def follow(self) -> None:
        """When the assignment changed: drop the windows of partitions no longer owned,
        restore those of new ones.

        Partitions kept through a rebalance keep their windows: every batch was delivered
        before the poll in which the rebalance happened.
        """
        if not self.assignment.changed.is_set():
            return
        self.assignment.changed.clear()
        owned = {tp.partition for tp in list(self.assignment.partitions)}
        gone, new = self.held - owned, owned - self.held
        if gone:
            self.on_drop(gone)
            dropped = self.processor.forget_partitions(gone)
            self.metrics.keys(self.processor.active_keys)
            log.info("dropped the windows of %d keys of revoked partitions %s", dropped, gone)
        self.held -= gone
        if new:
            self._restore(new)

    def reload(self) -> list[Partition]:
        """After a failure: forget every window, restore those of every partition owned;
        returns the partitions owned."""
        self.processor.forget_partitions(self.held)
        self.held.clear()
        self.assignment.changed.clear()
        owned = list(self.assignment.partitions)
        self._restore({tp.partition for tp in owned})
        return owned

    def _restore(self, partitions: set[int]) -> None:
        if self.changelog is None:
            self.held |= partitions
            return
        started = time.perf_counter()
        by_partition = self.changelog.read(partitions)
        restored = Restored(0, 0)
        for partition, snapshots in by_partition.items():
            loaded = self.processor.load_windows(partition, snapshots)
            restored = Restored(
                restored.windows + loaded.windows, restored.skipped + loaded.skipped
            )
        elapsed = time.perf_counter() - started
        self.held |= partitions
        self.metrics.restored(elapsed, restored, self.processor.active_keys)
        log.info(
            "restored the windows of %d keys of partitions %s in %.2fs",
            restored.windows,
            sorted(partitions),
            elapsed,
        )
