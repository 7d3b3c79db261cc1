"""The baselines beside the model: seasonal naive finds the day before, the ridge learns
what is linear, and the comparison is pooled and per key."""

from __future__ import annotations

import numpy as np
import pytest

from stream_forecaster.data.series import Series, make_windows
from stream_forecaster.training.baselines import DAY_MS, Ridge, compare, seasonal_naive

HOUR_MS = 3600 * 1000


def hourly(key: str, values: np.ndarray, start_ms: int = 0) -> Series:
    ts = start_ms + np.arange(len(values), dtype=np.int64) * HOUR_MS
    return Series(
        key=key,
        ts=ts,
        features=values.reshape(-1, 1).astype(np.float64),
        target=values.astype(np.float64),
        target_observed=np.ones(len(values), dtype=bool),
    )


def test_seasonal_naive_is_the_value_a_day_before_else_the_last_value() -> None:
    hours = np.arange(24 * 10)
    daily = hourly("a", 10 + 5 * np.sin(2 * np.pi * hours / 24))
    windows = make_windows([daily], 6)
    values, found = seasonal_naive(windows, [daily])
    assert found.mean() == pytest.approx(1 - 18 / len(windows))  # the first day has none
    np.testing.assert_allclose(values[found], windows.targets[found], atol=1e-9)  # exact cycle
    np.testing.assert_array_equal(values[~found], windows.last_targets[~found])
    assert DAY_MS == 24 * HOUR_MS


def test_the_ridge_learns_a_linear_next_change() -> None:
    rng = np.random.default_rng(0)
    x = np.zeros(3000)
    for t in range(1, len(x)):  # mean-reverting: the next change is -0.7 of the level
        x[t] = 0.3 * x[t - 1] + rng.normal(0, 1)
    windows = make_windows([hourly("a", x)], 4)
    before = windows.select(np.arange(len(windows)) < 2000)
    after = windows.select(np.arange(len(windows)) >= 2000)
    ridge = Ridge.fit(before).predict(after)
    ridge_mae = np.abs(ridge - after.targets).mean()
    persistence_mae = np.abs(after.last_targets - after.targets).mean()
    assert ridge_mae < 0.85 * persistence_mae
    assert np.isnan(Ridge.fit(before.select(np.arange(len(before)) < 5)).predict(after)).all()


def test_the_comparison_is_pooled_and_per_key_with_skill() -> None:
    hours = np.arange(24 * 20)
    quiet = hourly("quiet", 10 + np.sin(2 * np.pi * hours / 24))
    loud = hourly("loud", 50 + 20 * np.sin(2 * np.pi * hours / 24))
    series = [quiet, loud]
    windows = make_windows(series, 6)
    split = windows.target_ts >= 15 * DAY_MS
    evaluated, before = windows.select(split), windows.select(~split)
    comparison = compare(evaluated.targets + 0.5, evaluated, before, series)  # a model 0.5 off

    assert comparison.samples == len(evaluated)
    assert comparison.pooled["model"].mae == pytest.approx(0.5)
    assert comparison.pooled["seasonal naive"].mae == pytest.approx(0.0, abs=1e-9)
    assert comparison.skill("seasonal naive") == pytest.approx(1.0)
    assert comparison.skill() == pytest.approx(1 - 0.5 / comparison.pooled["persistence"].mae)
    assert set(comparison.per_key) == {"quiet", "loud"}
    assert comparison.per_key["loud"]["persistence"] > comparison.per_key["quiet"]["persistence"]
    text = "\n".join(comparison.lines())
    for method in ("model", "persistence", "seasonal naive", "ridge", "MAE per key", "loud"):
        assert method in text
    figures = comparison.as_dict()
    assert figures["skill"]["model"] == pytest.approx(comparison.skill())  # type: ignore[index]
