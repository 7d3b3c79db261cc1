"""Per-key intervals: each key's band follows its own errors, so a quiet key and a volatile
one both cover near the target; a single pooled width cannot."""

from __future__ import annotations

import numpy as np
import pytest

from stream_forecaster.scoring.key_scales import KeyScales
from stream_forecaster.scoring.online import OnlineScorer

KEYS = ["quiet", "volatile"]
SPREAD = {"quiet": 1.0, "volatile": 10.0}


def coverage_by_key(per_key: bool, steps: int = 3000, warm_up: int = 500) -> dict[str, float]:
    """Forecast 0 for two keys whose actuals spread 1 and 10; each key's share of actuals
    inside the interval it was given, after a warm-up."""
    rng = np.random.default_rng(1)
    scorer = OnlineScorer(2000, 0.9, 50, per_key=per_key)
    hits = {k: 0 for k in KEYS}
    for t in range(steps):
        bounds = scorer.intervals(np.zeros(2), KEYS)
        lower = None if bounds is None else bounds[0]
        upper = None if bounds is None else bounds[1]
        scorer.expect_many(KEYS, [t, t], np.zeros(2), np.zeros(2), "v1", lower=lower, upper=upper)
        actuals = [rng.normal(0, SPREAD[k]) for k in KEYS]
        scorer.score_many(KEYS, [t, t], actuals)
        if t >= warm_up and lower is not None and upper is not None:
            for i, k in enumerate(KEYS):
                hits[k] += int(lower[i] <= actuals[i] <= upper[i])
    return {k: hits[k] / (steps - warm_up) for k in KEYS}


def test_per_key_intervals_cover_each_key_near_the_target() -> None:
    per_key = coverage_by_key(per_key=True)
    assert 0.85 <= per_key["quiet"] <= 0.95, per_key
    assert 0.85 <= per_key["volatile"] <= 0.95, per_key
    pooled = coverage_by_key(per_key=False)
    assert pooled["quiet"] > 0.99 and pooled["volatile"] < 0.85, pooled  # what the issue saw


def test_a_new_key_takes_the_pooled_scale_and_bands_count_judged_keys() -> None:
    scales = KeyScales(max_keys=2)
    assert np.isnan(scales.scales(["a"])).all()  # nothing scored yet: no interval
    normalised = scales.normalise(["a", "a"], [2.0, 2.0], [-1, -1])
    assert normalised == [1.0, 1.0]  # its first error is its first scale
    assert scales.normalise(["b"], [4.0], [-1]) == [2.0]  # a new key: the pooled scale, 2
    assert scales.scales(["c"]).tolist() == [pytest.approx(scales.pooled)]
    scales.normalise(["c"], [1.0], [-1])
    assert len(scales) == 2  # bounded: "a", the least recently scored, went
    assert scales.coverage_bands(0.9) == {"below": 0, "within": 0, "above": 0}  # none judged
    for _ in range(60):
        scales.normalise(["b", "c"], [1.0, 1.0], [1, 0])
    assert scales.coverage_bands(0.9) == {"below": 1, "within": 0, "above": 1}
