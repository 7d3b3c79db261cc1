"""Online scoring: pending forecasts, per-version sliding accuracy, conformal intervals."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import cast

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_forecaster.scoring.figures import OfflinePoint, VersionStats, offline_stats
from stream_forecaster.scoring.online import UNSCORED_REASONS, OnlineScorer

HOUR = 3_600_000


def scorer(
    window: int = 10,
    coverage: float = 0.9,
    min_errors: int = 1,
    max_versions: int = 4,
    max_pending: int = 1_000_000,
) -> OnlineScorer:
    return OnlineScorer(window, coverage, min_errors, max_versions, max_pending)


def score_all(s: OnlineScorer, points: list[OfflinePoint], key: str = "k") -> None:
    """Feed ``points`` through expect/observe on one key, one step apart."""
    for i, (version, forecast, actual, persistence, lower, upper) in enumerate(points):
        s.expect(key, i * HOUR, forecast, persistence, version, lower=lower, upper=upper)
        assert s.observe(key, i * HOUR, actual) is not None


def assert_stats_agree(online: VersionStats | None, offline: VersionStats) -> None:
    assert online is not None
    assert online.n == offline.n
    assert online.scored_total == offline.scored_total
    assert online.n_intervals == offline.n_intervals
    assert online.coverage == offline.coverage
    assert online.mae == pytest.approx(offline.mae, rel=1e-9, abs=0)
    assert online.rmse == pytest.approx(offline.rmse, rel=1e-9, abs=0)
    assert online.persistence_mae == pytest.approx(offline.persistence_mae, rel=1e-9, abs=0)
    if offline.skill is None:
        assert online.skill is None
    else:
        assert online.skill is not None
        # skill = 1 - ratio: compare the ratio relatively (skill itself may be near 0).
        assert 1 - online.skill == pytest.approx(1 - offline.skill, rel=1e-9, abs=0)


# -- exact figures ---------------------------------------------------------------------------

HAND_POINTS: list[OfflinePoint] = [
    # version, forecast, actual, persistence, lower, upper
    ("v1", 10.0, 12.0, 11.0, None, None),  # |e| 2, e^2 4, |p| 1
    ("v1", 5.0, 4.0, 7.0, None, None),  # 1, 1, 3
    ("v1", 0.0, 3.0, 1.0, -1.0, 2.0),  # 3, 9, 2, not covered
    ("v1", 1.0, 1.5, 0.0, 0.0, 2.0),  # 0.5, 0.25, 1.5, covered
]


def test_mae_rmse_skill_and_coverage_on_a_hand_computed_example() -> None:
    s = scorer(window=10)
    score_all(s, HAND_POINTS)
    expected = VersionStats(
        n=4,
        scored_total=4,
        mae=6.5 / 4,
        rmse=math.sqrt(14.25 / 4),  # 1.8875
        persistence_mae=7.5 / 4,
        skill=1 - 6.5 / 7.5,  # 2/15
        coverage=0.5,
        n_intervals=2,
    )
    assert s.stats("v1") == expected
    assert offline_stats(HAND_POINTS, window=10) == {"v1": expected}
    stats = s.stats("v1")
    assert stats is not None and stats.skill == pytest.approx(2 / 15, rel=1e-15)


def test_observe_returns_the_scored_point() -> None:
    s = scorer()
    s.expect("a", 2 * HOUR, 10.0, 7.0, "v1", lower=8.0, upper=12.0)
    point = s.observe("a", 2 * HOUR, 13.0)
    assert point is not None
    assert (point.key, point.ts, point.model_version) == ("a", 2 * HOUR, "v1")
    assert (point.forecast, point.actual, point.persistence) == (10.0, 13.0, 7.0)
    assert (point.abs_error, point.squared_error, point.persistence_abs_error) == (3.0, 9.0, 6.0)
    assert (point.lower, point.upper, point.covered) == (8.0, 12.0, False)
    assert s.n_pending == 0
    assert s.observe("a", 2 * HOUR, 13.0) is None  # scored once only


def test_numpy_float32_inputs_are_scored_in_float64() -> None:
    # Typed float, but a caller passing numpy scalars must not get float32 arithmetic.
    s = scorer()
    forecast, persistence, lower, upper, actual = cast(
        "list[float]", [np.float32(v) for v in (1.1, 0.5, 0.0, 3.0, 2.2)]
    )
    s.expect("a", 0, forecast, persistence, "v", lower=lower, upper=upper)
    point = s.observe("a", 0, actual)
    assert point is not None
    error = float(np.float32(2.2)) - float(forecast)
    assert type(point.abs_error) is float and point.abs_error == abs(error)
    assert point.squared_error == error * error


def test_interval_bounds_are_inclusive() -> None:
    s = scorer()
    s.expect("a", 0, 10.0, 7.0, "v1", lower=8.0, upper=12.0)
    point = s.observe("a", 0, 12.0)
    assert point is not None and point.covered is True


def test_sliding_window_forgets_old_points() -> None:
    s = scorer(window=3)
    points: list[OfflinePoint] = [
        ("v", 0.0, e, 0.0, None, None) for e in (100.0, 100.0, 1.0, 2.0, 3.0)
    ]
    score_all(s, points)
    stats = s.stats("v")
    assert stats is not None
    assert (stats.n, stats.scored_total) == (3, 5)
    assert stats.mae == 2.0
    assert stats.rmse == math.sqrt(14 / 3)
    assert stats.coverage is None and stats.n_intervals == 0


def test_skill_is_none_when_persistence_is_perfect_and_coverage_counts_only_intervals() -> None:
    s = scorer(window=4)
    score_all(
        s,
        [
            ("v", 1.0, 2.0, 2.0, None, None),
            ("v", 1.0, 2.0, 2.0, 0.0, 3.0),
        ],
    )
    stats = s.stats("v")
    assert stats is not None
    assert stats.persistence_mae == 0 and stats.skill is None
    assert (stats.coverage, stats.n_intervals) == (1.0, 1)


def test_running_sums_stay_exact_when_a_huge_error_leaves_the_window() -> None:
    # Window 4: at update 8 the sums hold 1e12 + 0.3; a sum kept by adding and subtracting
    # would carry that rounding (about 1e-4) once 1e12 leaves at update 9.
    s = scorer(window=4)
    errors = [0.1] * 4 + [1e12] + [0.1] * 4
    points: list[OfflinePoint] = [("v", 0.0, e, 0.0, None, None) for e in errors]
    score_all(s, points)
    stats = s.stats("v")
    assert stats is not None
    assert stats.mae == pytest.approx(0.1, rel=1e-12, abs=0)
    assert_stats_agree(stats, offline_stats(points, window=4)["v"])


def test_sums_return_to_exact_zero() -> None:
    # Window 4: 0.1, 0.2 and 0.001 leave the window; subtracting them from a running sum
    # would not reach 0 in floating point; the figures must.
    s = scorer(window=4)
    points: list[OfflinePoint] = [("v", 0.0, d, -d, None, None) for d in (0.1, 0.2, 0.001, 0.0)]
    points += [("v", 0.0, 0.0, 0.0, None, None)] * 3
    score_all(s, points)
    stats = s.stats("v")
    assert stats is not None and stats.n == 4
    assert (stats.mae, stats.rmse, stats.persistence_mae, stats.skill) == (0.0, 0.0, 0.0, None)


# -- pending forecasts -----------------------------------------------------------------------


def test_unscored_reasons_start_at_zero() -> None:
    assert scorer().unscored == dict.fromkeys(UNSCORED_REASONS, 0)
    assert set(UNSCORED_REASONS) == {"superseded", "no_actual", "overflow", "forgotten"}


def test_a_newer_forecast_supersedes_the_pending_one() -> None:
    s = scorer()
    s.expect("a", HOUR, 1.0, 1.0, "v1")
    s.expect("a", 2 * HOUR, 2.0, 1.0, "v1")
    assert s.unscored["superseded"] == 1
    assert s.pending_ts("a") == 2 * HOUR
    assert s.observe("a", HOUR, 5.0) is None  # the old point is gone
    point = s.observe("a", 2 * HOUR, 5.0)
    assert point is not None and point.forecast == 2.0


def test_the_same_forecast_again_replaces_it_without_counting() -> None:
    # A batch processed again after a failed checkpoint forecasts the same (key, ts).
    s = scorer()
    s.expect("a", HOUR, 1.0, 1.0, "v1")
    s.expect("a", HOUR, 1.5, 1.0, "v2")
    assert s.unscored["superseded"] == 0 and s.n_pending == 1
    point = s.observe("a", HOUR, 2.0)
    assert point is not None and (point.forecast, point.model_version) == (1.5, "v2")


def test_an_actual_past_the_forecast_time_drops_it_and_an_earlier_one_keeps_it() -> None:
    s = scorer()
    s.expect("a", 2 * HOUR, 1.0, 1.0, "v1")
    assert s.observe("a", HOUR, 5.0) is None  # earlier (a duplicate of the window end)
    assert s.pending_ts("a") == 2 * HOUR and s.unscored["no_actual"] == 0
    assert s.observe("a", 4 * HOUR, 5.0) is None  # a gap: the actual for 2h never came
    assert s.pending_ts("a") is None and s.unscored["no_actual"] == 1
    assert s.stats("v1") is None and s.n_errors == 0


@pytest.mark.parametrize("actual", [math.nan, math.inf, -math.inf])
def test_a_non_finite_actual_is_not_scored(actual: float) -> None:
    s = scorer()
    s.expect("a", HOUR, 1.0, 1.0, "v1")
    assert s.observe("a", 0, actual) is None
    assert s.pending_ts("a") == HOUR and s.unscored["no_actual"] == 0
    assert s.observe("a", HOUR, actual) is None
    assert s.pending_ts("a") is None and s.unscored["no_actual"] == 1
    assert s.stats("v1") is None and s.n_errors == 0


def test_observe_without_a_pending_forecast_does_nothing() -> None:
    s = scorer()
    assert s.observe("nobody", 0, 1.0) is None
    assert s.unscored == dict.fromkeys(UNSCORED_REASONS, 0)


def test_overflow_drops_the_oldest_inserted_forecast() -> None:
    s = scorer(max_pending=2)
    s.expect("a", HOUR, 1.0, 1.0, "v")
    s.expect("b", HOUR, 1.0, 1.0, "v")
    s.expect("a", 2 * HOUR, 1.0, 1.0, "v")  # a is now newer than b
    s.expect("c", HOUR, 1.0, 1.0, "v")
    assert s.unscored["overflow"] == 1 and s.unscored["superseded"] == 1
    assert s.n_pending == 2
    assert s.pending_ts("b") is None
    assert s.pending_ts("a") == 2 * HOUR and s.pending_ts("c") == HOUR


def test_forget_drops_a_pending_forecast() -> None:
    s = scorer()
    s.expect("a", HOUR, 1.0, 1.0, "v")
    assert s.forget("a") is True
    assert s.forget("a") is False
    assert s.unscored["forgotten"] == 1 and s.n_pending == 0


@settings(max_examples=150, deadline=None)
@given(
    max_pending=st.integers(1, 5),
    ops=st.lists(
        st.tuples(
            st.booleans(),
            st.sampled_from("abcdefg"),
            st.integers(0, 6),
            st.sampled_from([1.0, 2.5, math.nan]),
        ),
        max_size=200,
    ),
)
def test_pending_is_bounded_and_every_forecast_is_accounted_for(
    max_pending: int, ops: list[tuple[bool, str, int, float]]
) -> None:
    s = scorer(max_pending=max_pending)
    expected = scored = 0
    pending: dict[str, int] = {}
    for is_expect, key, ts, value in ops:
        if is_expect:
            s.expect(key, ts, 1.0, 0.0, "v")
            if pending.get(key) != ts:  # the same (key, ts) again is one forecast
                expected += 1
            pending[key] = ts
        else:
            scored += s.observe(key, ts, value) is not None
        assert s.n_pending <= max_pending
        pending = {k: t for k, t in pending.items() if s.pending_ts(k) is not None}
    assert expected == scored + sum(s.unscored.values()) + s.n_pending
    stats = s.stats("v")
    assert (stats.scored_total if stats else 0) == scored


# -- versions ---------------------------------------------------------------------------------


def test_the_least_recently_scored_version_is_forgotten() -> None:
    s = scorer(max_versions=2)
    for i, version in enumerate(["a", "b", "a", "c"]):
        s.expect("k", i, 1.0, 0.0, version)
        s.observe("k", i, 2.0)
    assert s.versions() == ["a", "c"]
    assert s.stats("b") is None
    a = s.stats("a")
    assert a is not None and a.scored_total == 2


def test_expect_alone_does_not_create_a_version() -> None:
    s = scorer()
    s.expect("k", 0, 1.0, 0.0, "v")
    assert s.versions() == [] and s.stats("v") is None


# -- conformal intervals ----------------------------------------------------------------------


def feed_errors(s: OnlineScorer, errors: list[float], version: str = "v") -> None:
    score_all(s, [(version, 0.0, e, 0.0, None, None) for e in errors], key=f"feed-{version}")


def test_no_interval_before_min_errors() -> None:
    s = scorer(window=20, min_errors=5)
    feed_errors(s, [1.0, 2.0, 3.0, 4.0])
    assert s.interval(10.0) is None
    assert s.intervals(np.array([1.0, 2.0])) is None
    assert s.half_width() is None
    feed_errors(s, [5.0], version="w")
    assert s.interval(10.0) == (5.0, 15.0)


@pytest.mark.parametrize(
    ("n", "coverage", "q"),
    [
        (10, 0.8, 9.0),  # ceil(11 * 0.8) = 9
        (9, 0.9, 9.0),  # ceil(10 * 0.9) = 9
        (24, 0.28, 7.0),  # ceil(25 * 0.28) = 7, though 25 * 0.28 is 7.000000000000001 in float64
        (10, 0.5, 6.0),  # ceil(5.5) = 6
        (10, 0.99, 10.0),  # ceil(10.89) = 11, clamped to n
        (1, 0.1, 1.0),
    ],
)
def test_half_width_is_the_conformal_order_statistic(n: int, coverage: float, q: float) -> None:
    s = scorer(window=50, coverage=coverage)
    errors = [float(e) for e in range(n, 0, -1)]  # n .. 1, in no sorted order for the buffer
    feed_errors(s, errors)
    assert s.n_errors == n
    assert s.half_width() == q
    assert s.interval(100.0) == (100.0 - q, 100.0 + q)


def test_calibration_keeps_the_last_window_errors_of_all_versions() -> None:
    s = scorer(window=5, coverage=0.5)
    feed_errors(s, [100.0] * 5, version="old")
    assert s.half_width() == 100.0
    feed_errors(s, [1.0, 2.0, 3.0], version="new")  # a model swap: calibration carries on
    assert s.n_errors == 5
    assert s.half_width() == 3.0  # 3rd smallest of 100, 100, 1, 2, 3
    feed_errors(s, [4.0, 5.0], version="new")
    assert s.half_width() == 3.0  # 3rd smallest of 1..5


def test_intervals_of_a_batch_match_interval_and_follow_new_errors() -> None:
    s = scorer(window=10, coverage=0.8)
    feed_errors(s, [1.0, 2.0, 3.0, 4.0])
    forecasts = np.array([0.0, -1.5, 100.0], dtype=np.float32)
    result = s.intervals(forecasts)
    assert result is not None
    lower, upper = result
    assert lower.dtype == np.float64 and upper.dtype == np.float64
    for f, lo, hi in zip(forecasts.tolist(), lower.tolist(), upper.tolist(), strict=True):
        assert s.interval(f) == (lo, hi)
    assert s.half_width() == 4.0  # ceil(5 * 0.8) = 4th smallest
    feed_errors(s, [0.5] * 6, version="w")  # the cached q must not be reused
    assert s.half_width() == 3.0  # ceil(11 * 0.8) = 9th smallest of 0.5 x6, 1, 2, 3, 4


def test_conformal_coverage_on_iid_errors_is_near_the_target() -> None:
    rng = np.random.default_rng(20240501)
    s = OnlineScorer(window=1000, coverage=0.9, min_errors=30)
    signal = 50 + 10 * np.sin(np.arange(20_000) / 24)
    noise = rng.laplace(0.0, 3.0, size=20_000)
    covered: list[bool] = []
    for i in range(20_000):
        forecast = float(signal[i])
        bounds = s.interval(forecast)
        lower, upper = bounds if bounds is not None else (None, None)
        s.expect("k", i, forecast, forecast, "v", lower=lower, upper=upper)
        point = s.observe("k", i, forecast + float(noise[i]))
        assert point is not None
        if point.covered is not None:
            covered.append(point.covered)
    assert len(covered) == 20_000 - 30
    observed = sum(covered) / len(covered)
    assert 0.88 <= observed <= 0.92
    stats = s.stats("v")
    assert stats is not None and stats.coverage is not None
    assert stats.n_intervals == 1000
    assert 0.85 <= stats.coverage <= 0.95


# -- agreement with the offline recomputation -------------------------------------------------

values = st.floats(-1e12, 1e12, allow_nan=False, allow_infinity=False, allow_subnormal=False)
offline_points = st.tuples(
    st.sampled_from(["v1", "v2", "v3"]),
    values,
    values,
    values,
    st.one_of(st.none(), st.tuples(values, st.floats(0, 1e12, allow_subnormal=False))),
)


@settings(max_examples=200, deadline=None)
@given(window=st.integers(1, 30), raw=st.lists(offline_points, max_size=400))
def test_online_stats_agree_with_offline_stats(
    window: int,
    raw: list[tuple[str, float, float, float, tuple[float, float] | None]],
) -> None:
    points: list[OfflinePoint] = [
        (v, f, a, p, None, None) if iv is None else (v, f, a, p, iv[0], iv[0] + iv[1])
        for v, f, a, p, iv in raw
    ]
    s = scorer(window=window, max_versions=3)
    score_all(s, points)
    offline = offline_stats(points, window)
    assert sorted(s.versions()) == sorted(offline)
    for version, expected in offline.items():
        assert_stats_agree(s.stats(version), expected)


def test_online_stats_agree_with_offline_stats_over_a_long_mixed_scale_stream() -> None:
    # Mostly errors of 1e-6 .. 1, with a rare 1e8 among them: when one leaves the window,
    # a running sum that only adds and subtracts keeps its rounding error, which is most of
    # what is left.
    rng = np.random.default_rng(7)
    n, window = 30_000, 97
    scale = np.where(rng.random(n) < 0.01, 1e8, 10.0 ** rng.uniform(-6, 0, size=n))
    forecast = rng.normal(0, 100, size=n)
    actual = forecast + rng.laplace(0, 1, size=n) * scale
    persistence = actual + rng.laplace(0, 1, size=n) * scale[::-1]
    s = scorer(window=window, max_versions=2)
    points: list[OfflinePoint] = []
    by_version: dict[str, list[OfflinePoint]] = {"v1": [], "v2": []}
    for i in range(n):
        half = float(scale[i])
        point: OfflinePoint = (
            "v1" if i < n // 2 else "v2",
            float(forecast[i]),
            float(actual[i]),
            float(persistence[i]),
            float(forecast[i]) - half if i % 3 else None,
            float(forecast[i]) + half if i % 3 else None,
        )
        points.append(point)
        by_version[point[0]].append(point)
        score_all(s, [point], key=f"k{i % 11}")
        if i % 7 == 0:  # against the plain recomputation of this version's last window
            mine = by_version[point[0]]
            expected = offline_stats(mine[-window:], window)[point[0]]
            online = s.stats(point[0])
            assert online is not None and online.scored_total == len(mine)
            assert_stats_agree(replace(online, scored_total=expected.scored_total), expected)
    offline = offline_stats(points, window)
    assert list(offline) == s.versions() == ["v1", "v2"]
    for v in ("v1", "v2"):
        assert_stats_agree(s.stats(v), offline[v])


def test_offline_stats_keeps_all_time_counts_and_first_appearance_order() -> None:
    points: list[OfflinePoint] = [("b", 0.0, 1.0, 0.0, None, None)] * 3
    points += [("a", 0.0, 2.0, 0.0, None, None)]
    result = offline_stats(points, window=2)
    assert list(result) == ["b", "a"]
    assert (result["b"].n, result["b"].scored_total) == (2, 3)


# -- bad arguments ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"window": 0}, "window must be at least 1; received 0"),
        ({"min_errors": 0}, "min_errors must be at least 1; received 0"),
        ({"max_versions": 0}, "max_versions must be at least 1; received 0"),
        ({"max_pending": 0}, "max_pending must be at least 1; received 0"),
        ({"coverage": 1.0}, "coverage must be between 0 and 1 (exclusive); received 1.0"),
        ({"coverage": 0.0}, "coverage must be between 0 and 1 (exclusive); received 0.0"),
        ({"window": 10, "min_errors": 11}, "min_errors must be at most window (10)"),
    ],
)
def test_bad_constructor_arguments_say_what_was_received(
    kwargs: dict[str, float], message: str
) -> None:
    arguments: dict[str, float] = {"window": 10, "coverage": 0.9, "min_errors": 1, **kwargs}
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        OnlineScorer(
            window=int(arguments["window"]),
            coverage=arguments["coverage"],
            min_errors=int(arguments["min_errors"]),
            max_versions=int(kwargs.get("max_versions", 4)),
            max_pending=int(kwargs.get("max_pending", 10)),
        )


@pytest.mark.parametrize(
    ("forecast", "persistence", "lower", "upper", "message"),
    [
        (math.nan, 1.0, None, None, "forecast must be a finite number; received nan"),
        (1.0, math.inf, None, None, "persistence must be a finite number; received inf"),
        (1.0, 1.0, 0.0, None, "lower and upper must both be given or both be None"),
        (1.0, 1.0, 2.0, 0.0, "expected lower <= upper; received 2.0 > 0.0"),
        (1.0, 1.0, math.nan, 2.0, "lower must be a finite number; received nan"),
    ],
)
def test_bad_forecasts_are_refused(
    forecast: float, persistence: float, lower: float | None, upper: float | None, message: str
) -> None:
    s = scorer()
    with pytest.raises(ValueError, match=message):
        s.expect("a", 0, forecast, persistence, "v", lower=lower, upper=upper)
    assert s.n_pending == 0


def test_from_settings_uses_the_scoring_section() -> None:
    from stream_forecaster.settings import ScoringSettings

    s = OnlineScorer.from_settings(ScoringSettings(window=50, coverage=0.8, min_errors=7))
    assert (s.window, s.coverage, s.min_errors) == (50, 0.8, 7)


# -- batches ---------------------------------------------------------------------------------

finite = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False, allow_subnormal=False)
batch_of_readings = st.lists(
    st.tuples(
        st.sampled_from("abcd"),
        st.integers(0, 6),  # reading time, in hours
        st.one_of(finite, st.just(math.nan)),  # actual
        st.booleans(),  # the reading gives a forecast for the next hour
        finite,  # the forecast
        st.one_of(st.none(), st.floats(0, 10)),  # interval half-width, or no interval
    ),
    max_size=30,
)


@settings(max_examples=150, deadline=None)
@given(
    batches=st.lists(st.tuples(st.sampled_from(["v1", "v2", "v3"]), batch_of_readings), max_size=6),
    window=st.integers(1, 12),
)
def test_a_batch_is_scored_as_one_reading_and_forecast_at_a_time(
    batches: list[tuple[str, list[tuple[str, int, float, bool, float, float | None]]]],
    window: int,
) -> None:
    """score_many then expect_many (the pipeline's batch) against score per reading, then
    expect and score per forecast: the same pending forecasts, unscored counts, versions,
    figures and conformal half-width."""
    one, many = scorer(window=window), scorer(window=window)
    for version, readings in batches:
        keys = [r[0] for r in readings]
        stamps = [r[1] * HOUR for r in readings]
        actuals = [r[2] for r in readings]
        for key, stamp, actual in zip(keys, stamps, actuals, strict=True):
            one.score(key, stamp, actual)
        assert many.score_many(keys, stamps, actuals) >= 0
        in_batch = dict(zip(zip(keys, stamps, strict=True), actuals, strict=True))
        forecasts = [
            (key, stamp + HOUR, value, 0.5 * value, width)
            for key, stamp, _, gives, value, width in readings
            if gives
        ]
        with_intervals = bool(forecasts) and forecasts[0][4] is not None
        for key, ts, value, naive, width in forecasts:
            low: float | None = value - (width or 0) if with_intervals else None
            high: float | None = value + (width or 0) if with_intervals else None
            one.expect(key, ts, value, naive, version, lower=low, upper=high)
            if (in_time := in_batch.get((key, ts))) is not None:
                one.score(key, ts, in_time)
        many.expect_many(
            [f[0] for f in forecasts],
            [f[1] for f in forecasts],
            [f[2] for f in forecasts],
            [f[3] for f in forecasts],
            version,
            lower=[f[2] - (f[4] or 0) for f in forecasts] if with_intervals else None,
            upper=[f[2] + (f[4] or 0) for f in forecasts] if with_intervals else None,
            actuals=in_batch,
        )
        assert many.unscored == one.unscored
        assert many.n_pending == one.n_pending
        assert [many.pending_ts(k) for k in "abcd"] == [one.pending_ts(k) for k in "abcd"]
        assert many.versions() == one.versions()
        assert many.half_width() == one.half_width()
        for v in one.versions():
            expected = one.stats(v)
            assert expected is not None
            assert_stats_agree(many.stats(v), expected)


def test_a_batch_with_a_bad_forecast_says_which() -> None:
    s = scorer()
    with pytest.raises(
        ValueError, match=r"forecast must be a finite number; received nan at index 1"
    ):
        s.expect_many(["a", "b"], [0, 0], [1.0, math.nan], [1.0, 1.0], "v1")
    with pytest.raises(ValueError, match=r"expected lower <= upper; received 2.0 > 1.0 at index 0"):
        s.expect_many(["a"], [0], [1.0], [1.0], "v1", lower=[2.0], upper=[1.0])
    with pytest.raises(ValueError, match=r"expected as many times, forecasts"):
        s.expect_many(["a", "b"], [0], [1.0], [1.0], "v1")
    assert s.n_pending == 0
