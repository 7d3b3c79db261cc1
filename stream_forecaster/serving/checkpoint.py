"""What serve has done since its last checkpoint (offsets to commit, windows to snapshot),
and the checkpoint on its way.

With ``at_least_once``, forecasts and dead letters are sent as soon as a batch is
processed, and a checkpoint begins every ``SF_PROCESSING__COMMIT_INTERVAL_MS``
(:class:`PendingCheckpoint` gathers what it covers). It keeps quix-streams' order, but the
loop does not wait for it (:class:`CheckpointInFlight`): the forecasts and dead letters
sent before it are acknowledged -> the changelog (snapshots of the windows changed since
the last checkpoint, taken when this one began) is produced, a slice per loop turn -> it
is acknowledged -> the offsets are committed. Meanwhile the loop goes on processing (a
checkpoint that blocked the loop made the tail of the latency: docs/benchmarks.md). A
key's window is snapshotted once per
checkpoint however often it changed.

What a crash loses is what a restart reprocesses, from the committed offsets on top of
windows at least as new as those offsets (a snapshot is only produced once every forecast
made from the readings in it is acknowledged, and offsets are only committed once their
snapshots are): a replayed reading already in a window is a duplicate and is ignored.

With ``exactly_once`` every batch is its own transaction (a transaction must not span a
poll, in which a rebalance may move its partitions to another instance), so the
checkpoint is taken after every batch.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

from stream_forecaster.serving.batch import BatchOutput
from stream_forecaster.wire.records import OutputRecord


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


class PublishError(RuntimeError):
    """Forecasts, dead letters or changelog records could not be published; offsets were
    not committed."""


class CheckpointInFlight:
    """One ``at_least_once`` checkpoint on its way, moved forward by :meth:`advance` on each
    turn of the loop without waiting (see the module docstring for the order).

    Args:
        pending: what the checkpoint covers (its futures: forecasts and dead letters sent).
        changelog: its changelog records, built when it began.
        started: monotonic time it began.
    """

    def __init__(
        self, pending: PendingCheckpoint, changelog: list[OutputRecord], started: float
    ) -> None:
        self.offsets = pending.offsets
        self.started = started
        self.n_changelog = len(changelog)
        self._unsent: deque[OutputRecord] = deque(changelog)
        self._awaiting: deque[Any] = deque(pending.futures)
        self._output_acked = False

    def advance(self, send: Callable[[OutputRecord], Any], slice_size: int) -> bool:
        """One step forward; returns True once only the commit of :attr:`offsets` is left.

        Args:
            send: sends a changelog record, returns its future.
            slice_size: changelog records sent per step, at most.

        Raises:
            PublishError: a record was not published.
        """
        awaiting = self._awaiting
        while awaiting and awaiting[0].is_done:  # they complete about in order
            future = awaiting.popleft()
            if future.failed():
                raise PublishError(f"a record was not published: {future.exception!r}")
        if not self._output_acked:
            if awaiting:
                return False
            self._output_acked = True  # only now may the snapshots be produced
        unsent = self._unsent
        for _ in range(min(slice_size, len(unsent))):
            awaiting.append(send(unsent.popleft()))
        return not unsent and not awaiting

    def finish(self, send: Callable[[OutputRecord], Any], flush: Callable[[], None]) -> None:
        """Drive it to the commit, waiting (``flush``: until everything sent is acknowledged).

        Raises:
            PublishError: a record was not published.
        """
        for _ in range(3):  # acknowledged output -> changelog sent -> acknowledged
            flush()
            if self.advance(send, len(self._unsent)):
                return
        raise PublishError("the checkpoint's records were not acknowledged after a flush")

    def drop_partitions(self, topic: str, partitions: Collection[int]) -> None:
        """Revoked input partitions: no commit for them, and their unsent snapshots stay
        unsent (their new owner writes its own)."""
        for partition in partitions:
            self.offsets.pop((topic, partition), None)
        self._unsent = deque(r for r in self._unsent if r.partition not in partitions)
