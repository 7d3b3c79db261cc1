"""Rolling windows per series key, in preallocated numpy ring buffers.

All keys share one float32 array of shape ``(capacity, window, n_features)``; a key owns
one slot of it, plus a few scalars in parallel arrays. Memory per key is bounded and
known (:meth:`WindowStore.bytes_per_key`); capacity doubles when the slots run out and
slots of evicted keys are reused.

Time rules, applied to each reading of a key against that key's newest reading:

- same timestamp: ``duplicate``, ignored (a replay after a crash cannot corrupt a window);
- older: dropped, as ``out_of_order`` when within ``late_tolerance_ms`` of the newest, else
  as ``late``;
- newer by more than ``max_gap`` sampling intervals: a gap; the window is reset
  (``gap_policy="reset"``) or the missing steps are filled with the last reading
  (``"fill"``);
- a missing (NaN) feature is filled forward from the key's previous reading; a window is
  ready only when every value in it is known.

The sampling interval is the configured one, or learned per key as the median of its last
eight steps.

A key's whole state can be written out as a snapshot (:meth:`WindowStore.snapshot`) and
loaded back bit for bit (:meth:`WindowStore.load_snapshot`): the changelog that lets
windows survive restarts and rebalances is made of these. Layout, little-endian::

    b"SFW1"  window:u32  n_features:u32
    head:i64  rows:i64  last_nan_row:i64  newest_ts:i64  n_steps:i64  steps:8*i64
    values: window*n_features float32, in ring-buffer order
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any, Final, Literal, NamedTuple

import numpy as np
import numpy.typing as npt

Outcome = Literal["appended", "duplicate", "out_of_order", "late"]
GapAction = Literal["none", "reset", "fill"]
#: :attr:`BatchUpdate.outcome` codes index this.
OUTCOMES: Final[tuple[Outcome, ...]] = ("appended", "duplicate", "out_of_order", "late")
#: :attr:`BatchUpdate.gap` codes index this.
GAP_ACTIONS: Final[tuple[GapAction, ...]] = ("none", "reset", "fill")

_STEPS_KEPT: Final = 8
#: Fewer readings than this in a round of :meth:`WindowStore.update_batch` are applied one
#: by one (numpy's per-call overhead is larger than the loop's). Not Final: tests lower it.
_MIN_VECTORISED = 16
_INITIAL_CAPACITY: Final = 64
_SNAPSHOT_MAGIC: Final = b"SFW1"
_SNAPSHOT_HEAD: Final = struct.Struct(f"<4sII5q{_STEPS_KEPT}q")


class SnapshotError(ValueError):
    """A window snapshot that cannot be loaded: damaged, or for another window shape."""


@dataclass(frozen=True)
class Update:
    """What one reading did to its key's window.

    Args:
        outcome: ``appended``, or why the reading was ignored.
        gap: ``reset`` or ``fill`` when the reading came after a gap, else ``none``.
        ready: the window is full and complete: a forecast can be made from it now.
        slot: the key's slot in the store.
        new_key: the reading created the key.
    """

    outcome: Outcome
    gap: GapAction
    ready: bool
    slot: int
    new_key: bool


@dataclass(frozen=True)
class BatchUpdate:
    """What a batch of readings did to their keys' windows (:meth:`WindowStore.update_batch`).

    Args:
        outcome: per reading, an index into :data:`OUTCOMES`.
        gap: per reading, an index into :data:`GAP_ACTIONS`.
        forecastable: the readings that were appended and left their window ready, in
            input order.
        windows: the window of each of those, right after its reading, oldest reading
            first; shape ``(len(forecastable), window, n_features)``.
        intervals: the key's sampling interval in ms at that point, for each of those.
    """

    outcome: npt.NDArray[np.int8]
    gap: npt.NDArray[np.int8]
    forecastable: npt.NDArray[np.int64]
    windows: npt.NDArray[np.float32]
    intervals: npt.NDArray[np.int64]


class WindowStore:
    """Windows of many series keys.

    Args:
        window: readings per window.
        n_features: features per reading.
        interval_ms: the sampling interval; ``None`` learns it per key.
        max_gap: a step longer than this many intervals is a gap.
        gap_policy: ``"reset"`` the window on a gap, or ``"fill"`` the missing steps.
        late_tolerance_ms: older readings within this of the newest count as out of order.
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
        capacity: int = _INITIAL_CAPACITY,
    ) -> None:
        if window < 1 or n_features < 1:
            raise ValueError(f"expected window and n_features >= 1, got {window}, {n_features}")
        self.window = window
        self.n_features = n_features
        self.interval_ms = interval_ms
        self.max_gap = max_gap
        self.gap_policy = gap_policy
        self.late_tolerance_ms = late_tolerance_ms
        # The snapshot layout (module docstring) as a numpy record: _SNAPSHOT_HEAD, values.
        self._snapshot_layout = np.dtype(
            [
                ("magic", "S4"),
                ("window", "<u4"),
                ("n_features", "<u4"),
                ("head", "<i8"),
                ("rows", "<i8"),
                ("last_nan_row", "<i8"),
                ("newest_ts", "<i8"),
                ("n_steps", "<i8"),
                ("steps", "<i8", (_STEPS_KEPT,)),
                ("values", "<f4", (window, n_features)),
            ]
        )
        self._slots: dict[str, int] = {}
        self._keys: list[str | None] = []
        self._free: list[int] = []
        self._allocate(max(1, capacity))

    # -- storage ---------------------------------------------------------------------------

    def _allocate(self, capacity: int) -> None:
        """Create the arrays, or grow them to ``capacity`` slots keeping their contents."""
        old = len(self._keys)

        def grown(name: str, shape: tuple[int, ...], dtype: type, fill: float) -> npt.NDArray[Any]:
            array: npt.NDArray[Any] = np.full((capacity, *shape), fill, dtype=dtype)
            if old:
                array[:old] = getattr(self, name)
            return array

        self._values = grown("_values", (self.window, self.n_features), np.float32, np.nan)
        self._head = grown("_head", (), np.int64, 0)
        self._rows = grown("_rows", (), np.int64, 0)
        self._last_nan_row = grown("_last_nan_row", (), np.int64, -1)
        self._newest_ts = grown("_newest_ts", (), np.int64, 0)
        self._steps = grown("_steps", (_STEPS_KEPT,), np.int64, 0)
        self._n_steps = grown("_n_steps", (), np.int64, 0)
        # The median of the kept steps, updated as they are learned (read per reading).
        self._learned_interval = grown("_learned_interval", (), np.int64, 0)
        self._last_seen = grown("_last_seen", (), np.float64, 0.0)
        self._keys.extend([None] * (capacity - old))
        self._free.extend(range(capacity - 1, old - 1, -1))

    @property
    def capacity(self) -> int:
        return len(self._keys)

    def __len__(self) -> int:
        return len(self._slots)

    def __contains__(self, key: object) -> bool:
        return key in self._slots

    def keys(self) -> list[str]:
        return list(self._slots)

    def bytes_per_key(self) -> int:
        """Bytes of numpy storage per slot (the dict entry and key string come on top)."""
        arrays = (
            self._values,
            self._head,
            self._rows,
            self._last_nan_row,
            self._newest_ts,
            self._steps,
            self._n_steps,
            self._learned_interval,
            self._last_seen,
        )
        return sum(a.nbytes for a in arrays) // self.capacity

    def _slot_for(self, key: str) -> tuple[int, bool]:
        slot = self._slots.get(key)
        if slot is not None:
            return slot, False
        if not self._free:
            self._allocate(self.capacity * 2)
        slot = self._free.pop()
        self._slots[key] = slot
        self._keys[slot] = key
        self._clear(slot)
        return slot, True

    def _clear(self, slot: int) -> None:
        self._head[slot] = 0
        self._rows[slot] = 0
        self._last_nan_row[slot] = -1
        self._newest_ts[slot] = 0
        self._n_steps[slot] = 0
        self._learned_interval[slot] = 0

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
                return Update(outcome, gap, self.is_ready(slot), slot, new_key)
            step = ts - newest
            interval = self.interval(slot)
            if interval and step > self.max_gap * interval:
                gap = self.gap_policy
                if gap == "reset":  # the learned interval stays: it belongs to the sensor
                    self._rows[slot] = 0
                    self._head[slot] = 0
                    self._last_nan_row[slot] = -1
                else:
                    missing = min(round(step / interval) - 1, self.window)
                    last = self._values[slot, (self._head[slot] - 1) % self.window].copy()
                    for _ in range(max(missing, 0)):
                        self._append(slot, last, bool(np.isnan(last).any()))
            else:
                self._learn_step(slot, step)
        if has_nan and self._rows[slot] > 0:
            previous = self._values[slot, (self._head[slot] - 1) % self.window]
            row = np.where(np.isnan(row), previous, row).astype(np.float32)
            has_nan = bool(np.isnan(row).any())
        self._append(slot, row, has_nan)
        self._newest_ts[slot] = ts
        return Update("appended", gap, self.is_ready(slot), slot, new_key)

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
            for members in _rounds(batch.slots)
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
        self._last_seen[slots] = batch.now
        known = self._rows[slots] > 0
        newest = self._newest_ts[slots]
        older = known & (ts < newest)
        late = older & (newest - ts > self.late_tolerance_ms)
        batch.outcome[members[known & (ts == newest)]] = OUTCOMES.index("duplicate")
        batch.outcome[members[older & ~late]] = OUTCOMES.index("out_of_order")
        batch.outcome[members[late]] = OUTCOMES.index("late")
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
            return _Ready(
                np.concatenate((filled.positions, kept.positions)),
                np.concatenate((filled.windows, kept.windows)),
                np.concatenate((filled.intervals, kept.intervals)),
            )
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

    def _learn_steps(self, slots: npt.NDArray[np.int64], steps: npt.NDArray[np.int64]) -> None:
        """:meth:`_learn_step` for distinct ``slots`` at once."""
        if not len(slots):
            return
        n_steps = self._n_steps[slots]
        self._steps[slots, n_steps % _STEPS_KEPT] = steps
        self._n_steps[slots] = n_steps + 1
        full = n_steps + 1 >= _STEPS_KEPT
        median = np.median(self._steps[slots[full]], axis=1)
        self._learned_interval[slots[full]] = median.astype(np.int64)
        for slot in slots[~full].tolist():
            self._learned_interval[slot] = self._median_step(slot)

    def _intervals(self, slots: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        """:meth:`interval` of each of ``slots``."""
        if self.interval_ms is not None:
            return np.full(len(slots), self.interval_ms, dtype=np.int64)
        return self._learned_interval[slots]

    def _append(self, slot: int, row: npt.NDArray[np.float32], has_nan: bool) -> None:
        head = int(self._head[slot])
        self._values[slot, head] = row
        if has_nan:
            self._last_nan_row[slot] = self._rows[slot]
        self._head[slot] = (head + 1) % self.window
        self._rows[slot] += 1

    def _learn_step(self, slot: int, step: int) -> None:
        n = int(self._n_steps[slot])
        self._steps[slot, n % _STEPS_KEPT] = step
        self._n_steps[slot] = n + 1
        self._learned_interval[slot] = self._median_step(slot)

    def _median_step(self, slot: int) -> int:
        """The median of the key's kept steps (0 when none), truncated to whole ms as
        ``int(np.median(...))`` would be; in plain Python, as numpy's median costs tens of
        microseconds on eight numbers."""
        n = min(int(self._n_steps[slot]), _STEPS_KEPT)
        if not n:
            return 0
        steps = sorted(self._steps[slot, :n].tolist())
        middle = n // 2
        return int(steps[middle] if n % 2 else (steps[middle - 1] + steps[middle]) / 2)

    # -- reading ---------------------------------------------------------------------------

    def is_ready(self, slot: int) -> bool:
        """The window holds ``window`` readings, every value known."""
        rows = int(self._rows[slot])
        return rows >= self.window and int(self._last_nan_row[slot]) < rows - self.window

    def interval(self, slot: int) -> int:
        """The key's sampling interval in ms (configured, or learned; 0 while unknown)."""
        if self.interval_ms is not None:
            return self.interval_ms
        return int(self._learned_interval[slot])

    def newest_ts(self, slot: int) -> int:
        return int(self._newest_ts[slot])

    def window_of(self, slot: int) -> npt.NDArray[np.float32]:
        """The key's window, oldest reading first, shape ``(window, n_features)`` (a copy)."""
        values, head = self._values[slot], int(self._head[slot])
        return np.concatenate((values[head:], values[:head]))

    def slot_of(self, key: str) -> int | None:
        return self._slots.get(key)

    # -- snapshots -------------------------------------------------------------------------

    def snapshot(self, key: str) -> bytes:
        """The key's complete state as bytes (layout in the module docstring).

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
        layout = self._snapshot_layout
        out = np.empty(len(keys), dtype=layout)
        out["magic"] = _SNAPSHOT_MAGIC
        out["window"] = self.window
        out["n_features"] = self.n_features
        out["head"] = self._head[slots]
        out["rows"] = self._rows[slots]
        out["last_nan_row"] = self._last_nan_row[slots]
        out["newest_ts"] = self._newest_ts[slots]
        out["n_steps"] = self._n_steps[slots]
        out["steps"] = self._steps[slots]
        out["values"] = self._values[slots]
        data, size = out.tobytes(), layout.itemsize
        return [data[i : i + size] for i in range(0, len(data), size)]

    def load_snapshot(self, key: str, data: bytes, now: float) -> None:
        """Set the key's state from :meth:`snapshot` bytes, replacing what it had.

        Args:
            key: the series key.
            data: the snapshot.
            now: the current (monotonic) time in seconds; the key counts as seen now.

        Raises:
            SnapshotError: the bytes are not a snapshot of this store's window shape.
        """
        expected = _SNAPSHOT_HEAD.size + self.window * self.n_features * 4
        if len(data) != expected or not data.startswith(_SNAPSHOT_MAGIC):
            raise SnapshotError(
                f"expected a {expected}-byte window snapshot for {key!r}, got {len(data)} bytes"
                + ("" if data.startswith(_SNAPSHOT_MAGIC) else " without the SFW1 header")
            )
        _magic, window, n_features, head, rows, last_nan, newest, n_steps, *steps = (
            _SNAPSHOT_HEAD.unpack_from(data)
        )
        if (window, n_features) != (self.window, self.n_features):
            raise SnapshotError(
                f"snapshot of {key!r} holds a {window}x{n_features} window; "
                f"expected {self.window}x{self.n_features}"
            )
        slot, _ = self._slot_for(key)
        self._head[slot] = head
        self._rows[slot] = rows
        self._last_nan_row[slot] = last_nan
        self._newest_ts[slot] = newest
        self._n_steps[slot] = n_steps
        self._steps[slot] = steps
        self._learned_interval[slot] = self._median_step(slot)
        self._values[slot] = np.frombuffer(data, np.float32, offset=_SNAPSHOT_HEAD.size).reshape(
            self.window, self.n_features
        )
        self._last_seen[slot] = now

    # -- forgetting ------------------------------------------------------------------------

    def drop(self, key: str) -> bool:
        """Forget a key; returns whether it was there."""
        slot = self._slots.pop(key, None)
        if slot is None:
            return False
        self._keys[slot] = None
        self._clear(slot)
        self._free.append(slot)
        return True

    def evict_idle(self, now: float, ttl_s: float) -> list[str]:
        """Forget keys not updated for more than ``ttl_s`` seconds; returns their names."""
        used = np.fromiter((k is not None for k in self._keys), dtype=bool, count=self.capacity)
        idle = np.flatnonzero(used & (self._last_seen < now - ttl_s))
        evicted = [k for k in (self._keys[int(s)] for s in idle) if k is not None]
        for key in evicted:
            self.drop(key)
        return evicted


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


def _rounds(slots: npt.NDArray[np.int64]) -> list[npt.NDArray[np.int64]]:
    """Positions of ``slots`` grouped by occurrence: the first reading of every slot, then
    the second, ...; each group in input order."""
    n = len(slots)
    if n == 0:
        return []
    order = np.argsort(slots, kind="stable")
    ordered = slots[order]
    first = np.ones(n, dtype=bool)
    first[1:] = ordered[1:] != ordered[:-1]
    starts = np.maximum.accumulate(np.where(first, np.arange(n), 0))
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n) - starts
    if not rank.any():
        return [np.arange(n, dtype=np.int64)]
    by_rank = np.argsort(rank, kind="stable")
    bounds = np.flatnonzero(np.diff(rank[by_rank])) + 1
    return np.split(by_rank, bounds)
