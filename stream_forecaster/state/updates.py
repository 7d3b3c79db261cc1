"""What readings did to their keys' windows: the outcome of each (appended, or why it was
ignored), the gap action taken, and which windows became ready to forecast from."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

import numpy as np
import numpy.typing as npt

Outcome = Literal["appended", "duplicate", "out_of_order", "late"]


GapAction = Literal["none", "reset", "fill", "rewind"]


#: :attr:`BatchUpdate.outcome` codes index this.
OUTCOMES: Final[tuple[Outcome, ...]] = ("appended", "duplicate", "out_of_order", "late")


#: :attr:`BatchUpdate.gap` codes index this.
GAP_ACTIONS: Final[tuple[GapAction, ...]] = ("none", "reset", "fill", "rewind")


@dataclass(frozen=True)
class Update:
    """What one reading did to its key's window.

    Args:
        outcome: ``appended``, or why the reading was ignored.
        gap: ``reset`` or ``fill`` when the reading came after a gap, ``rewind`` when it
            restarted a window that had gone back in time, else ``none``.
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


def rounds(slots: npt.NDArray[np.int64]) -> list[npt.NDArray[np.int64]]:
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
