"""Rolling windows per series key, and the time rules that keep them.

Time rules, applied to each reading of a key against that key's newest reading:

- same timestamp: ``duplicate``, ignored (a replay after a crash cannot corrupt a window);
- older: dropped, as ``out_of_order`` when within ``late_tolerance_ms`` of the newest, else
  as ``late``; but ``rewind_after`` late readings in a row, each newer than the one before
  and more than ``max_gap`` intervals older than the newest, restart the window from the
  last of them (``rewind``: the key's clock, or its feed, went back in time);
- newer by more than ``max_gap`` sampling intervals: a gap; the window is reset
  (``gap_policy="reset"``) or the missing steps are filled with the last reading
  (``"fill"``);
- a missing (NaN) feature is filled forward from the key's previous reading; a window is
  ready only when every value in it is known.

The sampling interval is the configured one, or learned per key as the median of its last
eight steps.

A key's whole state can be written out as a snapshot (:meth:`WindowStore.snapshot`,
layout in :mod:`stream_forecaster.state.snapshots`) and loaded back bit for bit
(:meth:`WindowStore.load_snapshot`). The storage (slots in preallocated numpy arrays) is
:class:`~stream_forecaster.state.window_slots.WindowSlots`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal, NamedTuple

import numpy as np
import numpy.typing as npt

from stream_forecaster.state.snapshots import SnapshotCodec, SnapshotFields
from stream_forecaster.state.updates import (
    GAP_ACTIONS,
    OUTCOMES,
    BatchUpdate,
    GapAction,
    Outcome,
    Update,
    rounds,
)
from stream_forecaster.state.window_slots import WindowSlots

#: Fewer readings than this in a round of :meth:`WindowStore.update_batch` are applied one
#: by one (numpy's per-call overhead is larger than the loop's). Not Final: tests lower it.
_MIN_VECTORISED = 16


class WindowStore(WindowSlots):
    """Windows of many series keys.

    Args:
        window: readings per window.
        n_features: features per reading.
        interval_ms: the sampling interval; ``None`` learns it per key.
        max_gap: a step longer than this many intervals is a gap.
        gap_policy: ``"reset"`` the window on a gap, or ``"fill"`` the missing steps.
        late_tolerance_ms: older readings within this of the newest count as out of order.
        rewind_after: late readings in a row that restart the window (0: never).
        capacity: slots allocated at first (they double when full).
    """

    def __init__(
        self,
        window: int,
        n_features: int,
        *,
        interval_ms: int | None = None,
        max_gap: float = 3.0,
        gap_policy: Literal["reset", "fill"] = "reset",
        late_tolerance_ms: int = 0,
        rewind_after: int = 3,
        capacity: int = 64,
    ) -> None:
        super().__init__(window, n_features, interval_ms=interval_ms, capacity=capacity)
        self.max_gap = max_gap
        self.gap_policy = gap_policy
        self.late_tolerance_ms = late_tolerance_ms
        self.rewind_after = rewind_after
        self._codec = SnapshotCodec(window, n_features)

    # -- updates ---------------------------------------------------------------------------

    def update(
        self,
        key: str,
        ts: int,
        row: npt.NDArray[np.float32],
        now: float,
        has_nan: bool | None = None,
    ) -> Update:
        """Apply one reading.

        Args:
            key: the series key.
            ts: the reading's time, epoch milliseconds.
            row: the feature values in model order, NaN where missing; shape ``(n_features,)``.
            now: the current (monotonic) time in seconds, for idle-key eviction.
            has_nan: whether ``row`` has a NaN, when the caller knows (else checked here).
        """
        if has_nan is None:
            has_nan = bool(np.isnan(row).any())
        slot, new_key = self._slot_for(key)
        self._last_seen[slot] = now
        gap: GapAction = "none"
        if self._rows[slot] > 0:
            newest = int(self._newest_ts[slot])
            if ts == newest:
                return Update("duplicate", gap, self.is_ready(slot), slot, new_key)
            if ts < newest:
                outcome: Outcome = (
                    "out_of_order" if newest - ts <= self.late_tolerance_ms else "late"
                )
                if outcome == "out_of_order" or not self._rewinds(slot, ts, newest):
                    return Update(outcome, gap, self.is_ready(slot), slot, new_key)
                gap = "rewind"
                self._restart(slot)
            else:
                gap = self._step(slot, ts - newest)
        if has_nan and self._rows[slot] > 0:
            previous = self._values[slot, (self._head[slot] - 1) % self.window]
            row = np.where(np.isnan(row), previous, row).astype(np.float32)
            has_nan = bool(np.isnan(row).any())
        self._append(slot, row, has_nan)
        self._newest_ts[slot] = ts
        return Update("appended", gap, self.is_ready(slot), slot, new_key)

    def _step(self, slot: int, step: int) -> GapAction:
        """A step forward of ``step`` ms: learned, or a gap (the window reset or filled)."""
        self._late_run[slot] = 0
        interval = self.interval(slot)
        if not interval or step <= self.max_gap * interval:
            self._learn_step(slot, step)
            return "none"
        if self.gap_policy == "reset":
            self._restart(slot)
        else:
            missing = min(round(step / interval) - 1, self.window)
            last = self._values[slot, (self._head[slot] - 1) % self.window].copy()
            for _ in range(max(missing, 0)):
                self._append(slot, last, bool(np.isnan(last).any()))
        return self.gap_policy

    def _restart(self, slot: int) -> None:
        """Empty the key's window (the learned interval stays: it belongs to the sensor)."""
        self._rows[slot] = 0
        self._head[slot] = 0
        self._last_nan_row[slot] = -1
        self._late_run[slot] = 0

    def _rewinds(self, slot: int, ts: int, newest: int) -> bool:
        """Whether the late reading ``ts`` completes ``rewind_after`` in a row, each newer
        than the one before and well before ``newest`` (a straggler resets nothing)."""
        if not self.rewind_after or newest - ts <= self.max_gap * self.interval(slot):
            return False
        run = int(self._late_run[slot])
        run = run + 1 if run and ts > self._late_last_ts[slot] else 1
        self._late_run[slot] = run
        self._late_last_ts[slot] = ts
        return run >= self.rewind_after

    def update_batch(
        self,
        keys: list[str],
        ts: npt.NDArray[np.int64],
        rows: npt.NDArray[np.float32],
        now: float,
    ) -> BatchUpdate:
        """Apply a batch of readings, as :meth:`update` on each in turn would, vectorised.

        The readings are applied in rounds: round ``r`` holds the ``r``-th reading of every
        key in the batch, so that no key is twice in a round and each round is a handful of
        numpy operations whatever its size. Small rounds, and readings that fill a gap,
        take :meth:`update`'s path.

        Args:
            keys: the series key of each reading.
            ts: the readings' times, epoch milliseconds; shape ``(n,)``.
            rows: the feature values in model order, NaN where missing; ``(n, n_features)``.
            now: the current (monotonic) time in seconds, for idle-key eviction.
        """
        n = len(keys)
        if rows.shape != (n, self.n_features) or ts.shape != (n,):
            raise ValueError(
                f"expected {n} times and a ({n}, {self.n_features}) array of rows, "
                f"got shapes {ts.shape} and {rows.shape}"
            )
        slot_for = self._slot_for
        batch = _Batch(
            keys=keys,
            slots=np.fromiter((slot_for(key)[0] for key in keys), dtype=np.int64, count=n),
            ts=ts,
            rows=rows,
            now=now,
            outcome=np.zeros(n, dtype=np.int8),
            gap=np.zeros(n, dtype=np.int8),
        )
        found = [
            self._one_by_one(batch, members)
            if len(members) < _MIN_VECTORISED
            else self._round(batch, members)
            for members in rounds(batch.slots)
        ]
        if not found:
            found = [self._one_by_one(batch, _NO_ROWS)]
        positions = np.concatenate([f.positions for f in found])
        order = np.argsort(positions, kind="stable")
        return BatchUpdate(
            outcome=batch.outcome,
            gap=batch.gap,
            forecastable=positions[order],
            windows=np.concatenate([f.windows for f in found])[order],
            intervals=np.concatenate([f.intervals for f in found])[order],
        )

    def _one_by_one(self, batch: _Batch, members: npt.NDArray[np.int64]) -> _Ready:
        """:meth:`update` on each of the ``members`` of ``batch``, in turn."""
        positions, windows, intervals = [], [], []
        for i in members.tolist():
            update = self.update(batch.keys[i], int(batch.ts[i]), batch.rows[i], batch.now)
            batch.outcome[i] = OUTCOMES.index(update.outcome)
            batch.gap[i] = GAP_ACTIONS.index(update.gap)
            if update.outcome == "appended" and update.ready:
                positions.append(i)
                windows.append(self.window_of(update.slot))
                intervals.append(self.interval(update.slot))
        return _Ready(
            np.array(positions, dtype=np.int64),
            np.array(windows, dtype=np.float32).reshape(-1, self.window, self.n_features),
            np.array(intervals, dtype=np.int64),
        )

    def _round(self, batch: _Batch, members: npt.NDArray[np.int64]) -> _Ready:
        """:meth:`update` on ``members`` of ``batch`` (readings of distinct keys) at once; a
        reading that fills a gap is handed to :meth:`update` itself."""
        slots, ts = batch.slots[members], batch.ts[members]
        known = self._rows[slots] > 0
        newest = self._newest_ts[slots]
        older = known & (ts < newest)
        late = older & (newest - ts > self.late_tolerance_ms)
        if late.any():  # rare, and each may rewind its window: update() decides
            return _merged(
                self._one_by_one(batch, members[late]), self._round(batch, members[~late])
            )
        self._last_seen[slots] = batch.now
        batch.outcome[members[known & (ts == newest)]] = OUTCOMES.index("duplicate")
        batch.outcome[members[older]] = OUTCOMES.index("out_of_order")
        step = ts - newest
        stepping = known & (step > 0)
        interval = self._intervals(slots)
        is_gap = stepping & (interval > 0) & (step > self.max_gap * interval)
        if self.gap_policy == "fill" and is_gap.any():
            filled = self._one_by_one(batch, members[is_gap])
            rest = ~is_gap
            kept = self._append_round(
                batch, members[rest], stepping[rest], np.zeros(int(rest.sum()), bool), step[rest]
            )
            return _merged(filled, kept)
        batch.gap[members[is_gap]] = GAP_ACTIONS.index(self.gap_policy)
        return self._append_round(batch, members, stepping, is_gap, step)

    def _append_round(
        self,
        batch: _Batch,
        members: npt.NDArray[np.int64],
        stepping: npt.NDArray[np.bool_],
        reset: npt.NDArray[np.bool_],
        step: npt.NDArray[np.int64],
    ) -> _Ready:
        """Append the readings of ``members`` that are new or ``stepping`` forward; those
        after a gap to ``reset`` their window first, the others have their step learned."""
        w = self.window
        slots = batch.slots[members]
        appended = (self._rows[slots] == 0) | stepping
        # A gap resets the window (the learned interval stays: it belongs to the sensor).
        cleared = slots[reset]
        self._rows[cleared] = 0
        self._head[cleared] = 0
        self._last_nan_row[cleared] = -1
        self._late_run[slots[stepping]] = 0
        self._learn_steps(slots[stepping & ~reset], step[stepping & ~reset])
        slots, members = slots[appended], members[appended]
        rows = batch.rows[members]  # a copy: filled in place
        head, count = self._head[slots], self._rows[slots]
        missing = np.isnan(rows)
        with_nan = np.asarray(missing.any(axis=1))
        fill = with_nan & (count > 0)
        if fill.any():  # forward from the key's previous reading
            previous = self._values[slots[fill], (head[fill] - 1) % w]
            rows[fill] = np.where(missing[fill], previous, rows[fill])
            with_nan[fill] = np.isnan(rows[fill]).any(axis=1)
        self._values[slots, head] = rows
        self._last_nan_row[slots[with_nan]] = count[with_nan]
        head = (head + 1) % w
        count += 1
        self._head[slots] = head
        self._rows[slots] = count
        self._newest_ts[slots] = batch.ts[members]
        ready = (count >= w) & (self._last_nan_row[slots] < count - w)
        slots, head = slots[ready], head[ready]
        order = (head[:, None] + np.arange(w)) % w
        return _Ready(members[ready], self._values[slots[:, None], order], self._intervals(slots))

    # -- reading ---------------------------------------------------------------------------

    # -- snapshots -------------------------------------------------------------------------

    def snapshot(self, key: str) -> bytes:
        """The key's complete state as bytes.

        Raises:
            KeyError: the store does not hold ``key``.
        """
        return self.snapshots([key])[0]

    def snapshots(self, keys: list[str]) -> list[bytes]:
        """:meth:`snapshot` of each of ``keys``, built in one vectorised pass (the
        checkpoint writes one per changed key).

        Raises:
            KeyError: the store does not hold one of ``keys``.
        """
        slots = np.fromiter((self._slots[k] for k in keys), dtype=np.int64, count=len(keys))
        return self._codec.encode(
            SnapshotFields(
                self._head[slots],
                self._rows[slots],
                self._last_nan_row[slots],
                self._newest_ts[slots],
                self._n_steps[slots],
                self._steps[slots],
                self._values[slots],
            )
        )

    def load_snapshot(self, key: str, data: bytes, now: float) -> None:
        """Set the key's state from :meth:`snapshot` bytes, replacing what it had.

        Args:
            key: the series key.
            data: the snapshot.
            now: the current (monotonic) time in seconds; the key counts as seen now.

        Raises:
            SnapshotError: the bytes are not a snapshot of this store's window shape.
        """
        fields = self._codec.decode(key, data)
        slot, _ = self._slot_for(key)
        self._head[slot] = fields.head
        self._rows[slot] = fields.rows
        self._last_nan_row[slot] = fields.last_nan_row
        self._newest_ts[slot] = fields.newest_ts
        self._n_steps[slot] = fields.n_steps
        self._steps[slot] = fields.steps
        self._learned_interval[slot] = self._median_step(slot)
        self._values[slot] = fields.values
        self._last_seen[slot] = now

    # -- forgetting ------------------------------------------------------------------------


_NO_ROWS: Final = np.empty(0, dtype=np.int64)


@dataclass(frozen=True)
class _Batch:
    """The readings of one :meth:`WindowStore.update_batch`, and its outcomes so far."""

    keys: list[str]
    slots: npt.NDArray[np.int64]
    ts: npt.NDArray[np.int64]
    rows: npt.NDArray[np.float32]
    now: float
    outcome: npt.NDArray[np.int8]
    gap: npt.NDArray[np.int8]


class _Ready(NamedTuple):
    """Readings that left their window ready: positions in the batch, windows, intervals."""

    positions: npt.NDArray[np.int64]
    windows: npt.NDArray[np.float32]
    intervals: npt.NDArray[np.int64]


def _merged(first: _Ready, second: _Ready) -> _Ready:
    """Both, ``first``'s readings first."""
    return _Ready(
        np.concatenate((first.positions, second.positions)),
        np.concatenate((first.windows, second.windows)),
        np.concatenate((first.intervals, second.intervals)),
    )
