"""The retraining worker's memory of recent readings: a bounded history per key.

Each key keeps its newest ``per_key`` readings in numpy ring buffers (float32 values,
int64 times); at most ``max_keys`` keys are kept, the least recently updated one is
forgotten first. Readings not newer than the key's newest are ignored (a replay or an
out-of-order reading), as the forecasters' windows do.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from stream_forecaster.data.series import Series, forward_fill


class _KeyHistory:
    def __init__(self, capacity: int, n_columns: int) -> None:
        self.ts = np.zeros(capacity, dtype=np.int64)
        self.values = np.full((capacity, n_columns), np.nan, dtype=np.float32)
        self.head = 0
        self.count = 0

    def append(self, ts: int, row: npt.NDArray[np.float32]) -> bool:
        if self.count and ts <= self.ts[(self.head - 1) % len(self.ts)]:
            return False
        self.ts[self.head] = ts
        self.values[self.head] = row
        self.head = (self.head + 1) % len(self.ts)
        self.count = min(self.count + 1, len(self.ts))
        return True

    def ordered(self) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        start = (self.head - self.count) % len(self.ts)
        order = (start + np.arange(self.count)) % len(self.ts)
        return self.ts[order], self.values[order]


class History:
    """Recent readings of many keys.

    Args:
        columns: the value names kept per reading (the features, and the target if it is
            not one of them).
        per_key: readings kept per key.
        max_keys: keys kept.
    """

    def __init__(self, columns: Sequence[str], per_key: int, max_keys: int) -> None:
        if per_key < 2 or max_keys < 1:
            raise ValueError(f"expected per_key >= 2 and max_keys >= 1, got {per_key}, {max_keys}")
        self.columns = tuple(columns)
        self.per_key = per_key
        self.max_keys = max_keys
        self._keys: OrderedDict[str, _KeyHistory] = OrderedDict()
        self.readings = 0

    def __len__(self) -> int:
        return len(self._keys)

    def add(self, key: str, ts: int, values: dict[str, float | None]) -> bool:
        """Keep one reading; returns False when it was not newer than the key's newest."""
        row = np.fromiter(
            (np.nan if (v := values.get(c)) is None else v for c in self.columns),
            dtype=np.float32,
            count=len(self.columns),
        )
        history = self._keys.get(key)
        if history is None:
            if len(self._keys) >= self.max_keys:
                self._keys.popitem(last=False)
            history = self._keys[key] = _KeyHistory(self.per_key, len(self.columns))
        else:
            self._keys.move_to_end(key)
        added = history.append(ts, row)
        self.readings += int(added)
        return added

    def newest_ts(self) -> int | None:
        """The newest reading time over all keys."""
        newest = [h.ts[(h.head - 1) % len(h.ts)] for h in self._keys.values() if h.count]
        return int(max(newest)) if newest else None

    def series(self, features: Sequence[str], target: str) -> list[Series]:
        """Each key's history as a :class:`~stream_forecaster.data.tables.Series` (missing
        values filled forward; the target counts as observed only where it was sent)."""
        feature_idx = [self.columns.index(f) for f in features]
        target_idx = self.columns.index(target)
        out = []
        for key, history in self._keys.items():
            ts, values = history.ordered()
            raw = values.astype(np.float64)
            observed = ~np.isnan(raw[:, target_idx])
            filled = forward_fill(raw)
            out.append(
                Series(
                    key=key,
                    ts=ts,
                    features=np.ascontiguousarray(filled[:, feature_idx]),
                    target=filled[:, target_idx].copy(),
                    target_observed=observed,
                )
            )
        return out
