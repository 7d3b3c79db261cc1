"""The storage of the windows: preallocated numpy arrays with one slot per series key.

All keys share one float32 array of shape ``(capacity, window, n_features)``; a key owns
one slot of it, plus a few scalars in parallel arrays (its ring-buffer head, rows held, the
row of its last missing value, its newest time, its last steps and learned interval, when
it was last seen). Memory per key is bounded and known (:meth:`WindowSlots.bytes_per_key`);
capacity doubles when the slots run out, and slots of dropped keys are reused.
"""

from __future__ import annotations

from typing import Any, Final

import numpy as np
import numpy.typing as npt

#: Steps between readings kept per key, to learn its sampling interval from.
STEPS_KEPT: Final = 8
_INITIAL_CAPACITY: Final = 64


class WindowSlots:
    """The arrays and the key -> slot mapping of a window store.

    Args:
        window: readings per window.
        n_features: features per reading.
        interval_ms: the sampling interval; ``None`` learns it per key (the median of its
            last eight steps).
        capacity: slots allocated at first.
    """

    def __init__(
        self,
        window: int,
        n_features: int,
        *,
        interval_ms: int | None = None,
        capacity: int = _INITIAL_CAPACITY,
    ) -> None:
        if window < 1 or n_features < 1:
            raise ValueError(f"expected window and n_features >= 1, got {window}, {n_features}")
        self.window = window
        self.n_features = n_features
        self.interval_ms = interval_ms
        self._slots: dict[str, int] = {}
        self._keys: list[str | None] = []
        self._free: list[int] = []
        self._allocate(max(1, capacity))

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
        self._steps = grown("_steps", (STEPS_KEPT,), np.int64, 0)
        self._n_steps = grown("_n_steps", (), np.int64, 0)
        # The median of the kept steps, updated as they are learned (read per reading).
        self._learned_interval = grown("_learned_interval", (), np.int64, 0)
        self._last_seen = grown("_last_seen", (), np.float64, 0.0)
        # Late readings in a row, each newer than the last of them (see WindowStore.rewind_after).
        self._late_run = grown("_late_run", (), np.int64, 0)
        self._late_last_ts = grown("_late_last_ts", (), np.int64, 0)
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
            self._late_run,
            self._late_last_ts,
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
        self._late_run[slot] = 0

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
        self._steps[slot, n % STEPS_KEPT] = step
        self._n_steps[slot] = n + 1
        self._learned_interval[slot] = self._median_step(slot)

    def _learn_steps(self, slots: npt.NDArray[np.int64], steps: npt.NDArray[np.int64]) -> None:
        """:meth:`_learn_step` for distinct ``slots`` at once."""
        if not len(slots):
            return
        n_steps = self._n_steps[slots]
        self._steps[slots, n_steps % STEPS_KEPT] = steps
        self._n_steps[slots] = n_steps + 1
        full = n_steps + 1 >= STEPS_KEPT
        median = np.median(self._steps[slots[full]], axis=1)
        self._learned_interval[slots[full]] = median.astype(np.int64)
        for slot in slots[~full].tolist():
            self._learned_interval[slot] = self._median_step(slot)

    def _median_step(self, slot: int) -> int:
        """The median of the key's kept steps (0 when none), truncated to whole ms as
        ``int(np.median(...))`` would be; in plain Python, as numpy's call overhead is larger
        than the work on eight numbers."""
        n = min(int(self._n_steps[slot]), STEPS_KEPT)
        if not n:
            return 0
        steps = sorted(self._steps[slot, :n].tolist())
        middle = n // 2
        return int(steps[middle] if n % 2 else (steps[middle - 1] + steps[middle]) / 2)

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
