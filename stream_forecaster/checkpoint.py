"""What serve has done since its last checkpoint: offsets to commit, windows to snapshot.

With ``at_least_once``, forecasts and dead letters are sent as soon as a batch is
processed, but the checkpoint (quix-streams' order: flush what was sent -> produce the
changelog -> flush -> commit offsets) runs every ``SF_PROCESSING__COMMIT_INTERVAL_MS``.
Between two checkpoints a key's window is snapshotted once however often it changed, and
the loop never waits for acknowledgements or a commit round trip. What a crash loses is
what a restart reprocesses: at most one interval of records, from the committed offsets
on top of the windows of the same checkpoint (so it is all consistent).

With ``exactly_once`` every batch is its own transaction (a transaction must not span a
poll, in which a rebalance may move its partitions to another instance), so the
checkpoint is taken after every batch.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from stream_forecaster.pipeline import BatchOutput
from stream_forecaster.records import OutputRecord


@dataclass
class PendingCheckpoint:
    """Accumulates batches until the checkpoint.

    Args:
        started: monotonic time of the first batch since the last checkpoint.
        offsets: per (topic, partition), the next offset to commit.
        changed: key -> input partition, for every window changed since the checkpoint.
        tombstones: changelog deletions of evicted keys.
        futures: send results of the forecasts and dead letters already sent.
    """

    started: float | None = None
    offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    changed: dict[str, int] = field(default_factory=dict)
    tombstones: list[OutputRecord] = field(default_factory=list)
    futures: list[Any] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.offsets or self.changed or self.tombstones or self.futures)

    def add(self, out: BatchOutput, futures: list[Any], now: float) -> None:
        """Take in a processed batch and the futures of what was sent for it."""
        if self.started is None:
            self.started = now
        self.offsets.update(out.offsets)
        self.changed.update(out.changed)
        self.futures += futures

    def add_tombstones(self, tombstones: list[OutputRecord], now: float) -> None:
        """Evicted keys: their deletions replace any snapshot still to be written."""
        if not tombstones:
            return
        if self.started is None:
            self.started = now
        for record in tombstones:
            if record.key is not None:
                self.changed.pop(record.key.decode(), None)
        self.tombstones += tombstones

    def due(self, now: float, interval_s: float) -> bool:
        return self.started is not None and now - self.started >= interval_s

    def drop_partitions(self, topic: str, partitions: Collection[int]) -> None:
        """Forget revoked input partitions: their new owner reprocesses them from the last
        committed offsets, on the windows of that checkpoint."""
        for partition in partitions:
            self.offsets.pop((topic, partition), None)
        self.changed = {k: p for k, p in self.changed.items() if p not in partitions}
        self.tombstones = [t for t in self.tombstones if t.partition not in partitions]
