"""The retraining history: bounded per key and in keys, newest readings only."""

from __future__ import annotations

import numpy as np

from stream_forecaster.data.series import make_windows
from stream_forecaster.retraining.history import History

MIN = 60_000


def test_keeps_the_newest_readings_per_key_in_time_order() -> None:
    history = History(["t", "rh"], per_key=3, max_keys=10)
    for i in range(5):
        assert history.add("a", i * MIN, {"t": float(i), "rh": 10.0 + i})
    assert not history.add("a", 4 * MIN, {"t": 99.0, "rh": 99.0})  # a replay
    assert not history.add("a", 2 * MIN, {"t": 99.0, "rh": 99.0})  # out of order
    [series] = history.series(["t", "rh"], "t")
    np.testing.assert_array_equal(series.ts, [2 * MIN, 3 * MIN, 4 * MIN])
    np.testing.assert_array_equal(series.features[:, 0], [2.0, 3.0, 4.0])
    assert history.readings == 5
    assert history.newest_ts() == 4 * MIN


def test_forgets_the_least_recently_updated_key_beyond_max_keys() -> None:
    history = History(["t"], per_key=4, max_keys=2)
    history.add("a", 0, {"t": 1.0})
    history.add("b", 0, {"t": 1.0})
    history.add("a", MIN, {"t": 2.0})  # a is now more recent than b
    history.add("c", 0, {"t": 1.0})
    assert sorted(s.key for s in history.series(["t"], "t")) == ["a", "c"]


def test_missing_values_fill_forward_and_unobserved_targets_make_no_sample() -> None:
    history = History(["t", "rh"], per_key=10, max_keys=1)
    rows = [(1.0, 5.0), (2.0, None), (None, 7.0), (4.0, 8.0)]
    for i, (t, rh) in enumerate(rows):
        history.add("a", i * MIN, {"t": t, "rh": rh})
    [series] = history.series(["t", "rh"], "t")
    np.testing.assert_array_equal(series.features, [[1, 5], [2, 5], [2, 7], [4, 8]])
    np.testing.assert_array_equal(series.target_observed, [True, True, False, True])
    windows = make_windows([series], 1)
    # Targets at steps 1 and 3 were sent; the one at step 2 was filled: no sample for it.
    np.testing.assert_array_equal(windows.target_ts, [MIN, 3 * MIN])
