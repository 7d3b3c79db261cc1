"""Per-key windows: ring-buffer order, time rules, filling, readiness, eviction."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_forecaster.state import windows as windows_module
from stream_forecaster.state.snapshots import HEADER, SnapshotError
from stream_forecaster.state.updates import GAP_ACTIONS, OUTCOMES
from stream_forecaster.state.windows import WindowStore

MIN = 60_000


def row(*values: float) -> np.ndarray:
    return np.asarray(values, dtype=np.float32)


def feed(store: WindowStore, key: str, n: int, start: int = 0, step: int = MIN) -> None:
    for i in range(n):
        store.update(key, start + i * step, row(float(start // step + i), 0.0), now=0.0)


def test_window_is_ready_after_window_readings_and_ordered_oldest_first() -> None:
    store = WindowStore(window=3, n_features=2)
    results = [store.update("k", i * MIN, row(i, 10 * i), now=0.0) for i in range(5)]

    assert [r.ready for r in results] == [False, False, True, True, True]
    assert results[0].new_key and not results[1].new_key
    np.testing.assert_array_equal(store.window_of(results[-1].slot), [[2, 20], [3, 30], [4, 40]])
    assert store.newest_ts(results[-1].slot) == 4 * MIN
    assert store.interval(results[-1].slot) == MIN


def test_keys_do_not_share_windows() -> None:
    store = WindowStore(window=2, n_features=2)
    feed(store, "a", 3)
    feed(store, "b", 3, start=100 * MIN)
    a, b = store.slot_of("a"), store.slot_of("b")
    assert a is not None and b is not None
    np.testing.assert_array_equal(store.window_of(a)[:, 0], [1, 2])
    np.testing.assert_array_equal(store.window_of(b)[:, 0], [101, 102])


def test_repeated_timestamp_is_a_duplicate_and_changes_nothing() -> None:
    store = WindowStore(window=2, n_features=2)
    feed(store, "k", 3)
    slot = store.slot_of("k")
    assert slot is not None
    before = store.window_of(slot)
    result = store.update("k", 2 * MIN, row(99, 99), now=0.0)
    assert result.outcome == "duplicate"
    np.testing.assert_array_equal(store.window_of(slot), before)


def test_older_reading_is_dropped_as_out_of_order_or_late() -> None:
    store = WindowStore(window=2, n_features=2, late_tolerance_ms=30_000)
    feed(store, "k", 3)
    assert store.update("k", 2 * MIN - 10_000, row(1, 1), now=0.0).outcome == "out_of_order"
    assert store.update("k", MIN, row(1, 1), now=0.0).outcome == "late"
    slot = store.slot_of("k")
    assert slot is not None
    np.testing.assert_array_equal(store.window_of(slot)[:, 0], [1, 2])


def test_a_key_whose_clock_went_back_restarts_its_window() -> None:
    store = WindowStore(window=2, n_features=2, rewind_after=3)
    feed(store, "k", 5, start=1000 * MIN)  # newest at 1004 min
    back = [store.update("k", (10 + i) * MIN, row(70 + i, 0), now=0.0) for i in range(4)]
    assert [(u.outcome, u.gap) for u in back] == [
        ("late", "none"),
        ("late", "none"),
        ("appended", "rewind"),  # the third in a row, each newer than the one before
        ("appended", "none"),
    ]
    assert [u.ready for u in back[2:]] == [False, True]
    assert store.newest_ts(back[3].slot) == 13 * MIN
    np.testing.assert_array_equal(store.window_of(back[3].slot)[:, 0], [72, 73])
    assert store.interval(back[3].slot) == MIN  # learned from the sensor, kept


def test_stragglers_and_a_step_forward_do_not_add_up_to_a_rewind() -> None:
    store = WindowStore(window=2, n_features=2, rewind_after=2, max_gap=3)
    feed(store, "k", 10)  # newest at 9 min, one a minute
    for stamp in (7, 6, 8):  # within max_gap intervals of the newest: stragglers
        assert store.update("k", stamp * MIN, row(0, 0), now=0.0).outcome == "late"
    assert store.update("k", 1 * MIN, row(0, 0), now=0.0).outcome == "late"
    assert store.update("k", 1 * MIN - 1, row(0, 0), now=0.0).outcome == "late"  # not newer
    assert store.update("k", 10 * MIN, row(0, 0), now=0.0).gap == "none"  # forward: run over
    assert store.update("k", 2 * MIN, row(0, 0), now=0.0).outcome == "late"
    assert store.update("k", 3 * MIN, row(0, 0), now=0.0).gap == "rewind"


def test_late_readings_never_rewind_when_rewind_after_is_0() -> None:
    store = WindowStore(window=2, n_features=2, rewind_after=0)
    feed(store, "k", 5, start=1000 * MIN)
    outcomes = {store.update("k", i * MIN, row(0, 0), now=0.0).outcome for i in range(20)}
    assert outcomes == {"late"}


def test_gap_resets_the_window() -> None:
    store = WindowStore(window=3, n_features=2, max_gap=3)
    feed(store, "k", 4)
    result = store.update("k", 3 * MIN + 10 * MIN, row(50, 0), now=0.0)
    assert result.gap == "reset"
    assert not result.ready
    follow = [store.update("k", (14 + i) * MIN, row(51 + i, 0), now=0.0) for i in range(2)]
    assert [f.ready for f in follow] == [False, True]
    np.testing.assert_array_equal(store.window_of(result.slot)[:, 0], [50, 51, 52])


def test_gap_is_filled_when_so_configured() -> None:
    store = WindowStore(window=4, n_features=2, max_gap=2, gap_policy="fill")
    feed(store, "k", 2)  # values 0, 1 at 0 and 1 min
    result = store.update("k", 5 * MIN, row(5, 0), now=0.0)  # 2, 3, 4 missing
    assert result.gap == "fill"
    assert result.ready
    np.testing.assert_array_equal(store.window_of(result.slot)[:, 0], [1, 1, 1, 5])


def test_steps_within_max_gap_are_not_gaps() -> None:
    store = WindowStore(window=3, n_features=2, max_gap=3)
    feed(store, "k", 3)
    result = store.update("k", 2 * MIN + 3 * MIN, row(9, 0), now=0.0)
    assert result.gap == "none"
    assert result.ready


def test_missing_values_fill_forward_and_unknown_values_block_readiness() -> None:
    store = WindowStore(window=2, n_features=2)
    nan = float("nan")
    r0 = store.update("k", 0, row(1, nan), now=0.0)
    r1 = store.update("k", MIN, row(2, nan), now=0.0)
    r2 = store.update("k", 2 * MIN, row(nan, 7), now=0.0)
    r3 = store.update("k", 3 * MIN, row(4, nan), now=0.0)
    assert [r.ready for r in (r0, r1, r2, r3)] == [False, False, False, True]
    np.testing.assert_array_equal(store.window_of(r3.slot), [[2, 7], [4, 7]])


def test_configured_interval_wins_over_learned() -> None:
    store = WindowStore(window=2, n_features=2, interval_ms=1000, max_gap=3)
    store.update("k", 0, row(0, 0), now=0.0)
    assert store.update("k", 5000, row(0, 0), now=0.0).gap == "reset"
    assert store.interval(store.slot_of("k") or 0) == 1000


def test_learned_interval_is_the_median_of_recent_steps() -> None:
    store = WindowStore(window=2, n_features=2, max_gap=100)
    for i, ts in enumerate([0, 60, 120, 181, 240, 300, 420]):
        store.update("k", ts * 1000, row(i, 0), now=0.0)
    assert store.interval(store.slot_of("k") or 0) == 60_000


@given(st.lists(st.integers(min_value=1, max_value=10**9), min_size=1, max_size=20))
def test_learned_interval_equals_numpy_median_of_the_last_eight_steps(steps: list[int]) -> None:
    store = WindowStore(window=2, n_features=2, max_gap=1e12)
    ts = 0
    store.update("k", ts, row(0, 0), now=0.0)
    for step in steps:
        ts += step
        store.update("k", ts, row(0, 0), now=0.0)
    slot = store.slot_of("k") or 0
    assert store.interval(slot) == int(np.median(steps[-8:]))
    # ... and a key restored from its snapshot knows it too.
    restored = WindowStore(window=2, n_features=2)
    restored.load_snapshot("k", store.snapshot("k"), now=0.0)
    assert restored.interval(restored.slot_of("k") or 0) == int(np.median(steps[-8:]))


def test_idle_keys_are_evicted_and_slots_reused() -> None:
    store = WindowStore(window=2, n_features=2, capacity=2)
    store.update("old", 0, row(1, 1), now=0.0)
    store.update("new", 0, row(1, 1), now=100.0)
    assert store.evict_idle(now=150.0, ttl_s=60) == ["old"]
    assert store.keys() == ["new"]
    slot = store.update("third", 0, row(1, 1), now=150.0).slot
    assert store.capacity == 2  # the freed slot was reused
    assert not store.is_ready(slot)


def test_capacity_grows_and_memory_per_key_is_bounded() -> None:
    store = WindowStore(window=24, n_features=8, capacity=4)
    for k in range(100):
        for i in range(25):
            store.update(f"k{k}", i * MIN, np.full(8, i, dtype=np.float32), now=0.0)
    assert len(store) == 100
    assert store.capacity == 128
    assert all(store.is_ready(store.slot_of(f"k{k}") or 0) for k in range(100))
    assert store.bytes_per_key() == 24 * 8 * 4 + 8 * 8 + 9 * 8


@settings(max_examples=50, deadline=None)
@given(
    steps=st.lists(st.integers(-3, 3), min_size=1, max_size=60),
    window=st.integers(1, 6),
)
def test_window_matches_a_naive_reference(steps: list[int], window: int) -> None:
    """Against a list-based model of the rules (no gaps: max_gap is huge; no rewinds)."""
    store = WindowStore(window=window, n_features=1, max_gap=1e9, rewind_after=0)
    kept: list[tuple[int, float]] = []
    ts = 1000
    for i, step in enumerate(steps):
        ts = max(0, ts + step)
        result = store.update("k", ts, row(float(i)), now=0.0)
        if kept and ts <= kept[-1][0]:
            assert result.outcome != "appended"
            continue
        assert result.outcome == "appended"
        kept.append((ts, float(i)))
        assert result.ready == (len(kept) >= window)
        if result.ready:
            expected = [v for _, v in kept[-window:]]
            np.testing.assert_array_equal(store.window_of(result.slot)[:, 0], expected)


@pytest.mark.parametrize(("window", "features"), [(0, 1), (1, 0)])
def test_rejects_empty_shapes(window: int, features: int) -> None:
    with pytest.raises(ValueError, match="expected window"):
        WindowStore(window=window, n_features=features)


def state_of(store: WindowStore, key: str) -> tuple[object, ...]:
    slot = store.slot_of(key)
    assert slot is not None
    return (
        store.newest_ts(slot),
        store.interval(slot),
        store.is_ready(slot),
        store.window_of(slot).tobytes(),
    )


@settings(max_examples=40, deadline=None)
@given(
    before=st.lists(st.tuples(st.integers(-2, 6), st.booleans()), min_size=1, max_size=40),
    after=st.lists(st.tuples(st.integers(-2, 6), st.booleans()), max_size=20),
    policy=st.sampled_from(["reset", "fill"]),
)
def test_a_snapshot_restores_the_key_exactly(
    before: list[tuple[int, bool]], after: list[tuple[int, bool]], policy: str
) -> None:
    """Loaded into another store, a snapshot behaves exactly like the original from then on:
    same window, newest timestamp, learned interval, readiness, and same outcomes."""
    options = {"max_gap": 3.0, "gap_policy": policy}
    original = WindowStore(window=4, n_features=2, **options)  # type: ignore[arg-type]
    ts = 10 * MIN
    for i, (step, missing) in enumerate(before):
        ts += step * MIN
        original.update("k", ts, row(np.nan if missing else float(i), 1.0), now=0.0)
    restored = WindowStore(window=4, n_features=2, **options)  # type: ignore[arg-type]
    restored.update("other", 0, row(1.0, 1.0), now=0.0)  # the slot need not be the same
    restored.load_snapshot("k", original.snapshot("k"), now=5.0)
    assert state_of(restored, "k") == state_of(original, "k")
    for i, (step, missing) in enumerate(after):
        ts += step * MIN
        value = row(np.nan if missing else float(100 + i), 2.0)
        a = original.update("k", ts, value, now=0.0)
        b = restored.update("k", ts, value, now=0.0)
        assert (a.outcome, a.gap, a.ready) == (b.outcome, b.gap, b.ready)
        assert state_of(restored, "k") == state_of(original, "k")


@settings(max_examples=30, deadline=None)
@given(
    readings=st.lists(
        st.tuples(st.sampled_from(["a", "b", "c"]), st.integers(-2, 6), st.booleans()),
        min_size=1,
        max_size=60,
    )
)
def test_snapshots_in_one_pass_restore_every_key(readings: list[tuple[str, int, bool]]) -> None:
    """The vectorised snapshots of the checkpoint (several keys in several slots at once)
    each restore their own key exactly, and carry the header the reader expects."""
    store = WindowStore(window=4, n_features=2)
    ts = dict.fromkeys("abc", 10 * MIN)
    for i, (key, step, missing) in enumerate(readings):
        ts[key] += step * MIN
        store.update(key, ts[key], row(np.nan if missing else float(i), 1.0), now=0.0)
    keys = store.keys()
    restored = WindowStore(window=4, n_features=2)
    restored.update("other", 0, row(1.0, 1.0), now=0.0)  # other slots than the original's
    for key, data in zip(keys, store.snapshots(keys), strict=True):
        magic, window, n_features, *_ = HEADER.unpack_from(data)
        assert (magic, window, n_features) == (b"SFW1", 4, 2)
        restored.load_snapshot(key, data, now=0.0)
        assert state_of(restored, key) == state_of(store, key)


def test_a_snapshot_of_another_shape_or_damaged_is_refused() -> None:
    small = WindowStore(window=3, n_features=2)
    feed(small, "k", 3)
    data = small.snapshot("k")
    with pytest.raises(SnapshotError, match=r"holds a 3x2 window; expected 3x3"):
        WindowStore(window=3, n_features=3).load_snapshot("k", data[:-24] + bytes(36), 0.0)
    with pytest.raises(SnapshotError, match=r"expected a \d+-byte window snapshot for 'k', got"):
        WindowStore(window=3, n_features=2).load_snapshot("k", data[:-1], 0.0)
    with pytest.raises(SnapshotError, match="without the SFW1 header"):
        WindowStore(window=3, n_features=2).load_snapshot("k", b"XXXX" + data[4:], 0.0)


@settings(max_examples=60, deadline=None)
@given(
    batches=st.lists(
        st.lists(
            st.tuples(
                st.sampled_from(["a", "b", "c", "d"]),
                st.integers(-2, 6) | st.just(-30),  # -30: the key's clock goes back
                st.sampled_from([0.0, 1.0, np.nan]),
            ),
            max_size=40,
        ),
        min_size=1,
        max_size=4,
    ),
    policy=st.sampled_from(["reset", "fill"]),
    interval_ms=st.sampled_from([None, MIN]),
    vectorise_from=st.sampled_from([1, 16]),
    rewind_after=st.sampled_from([0, 1, 3]),
)
def test_a_batch_update_does_what_one_update_per_reading_does(
    batches: list[list[tuple[str, int, float]]],
    policy: str,
    interval_ms: int | None,
    vectorise_from: int,
    rewind_after: int,
) -> None:
    """update_batch (rounds of distinct keys, vectorised) against update (one reading at a
    time): same outcomes and gaps, the same windows and intervals for the same readings, and
    the same state of every key after each batch (compared through its snapshot)."""
    options = {
        "max_gap": 3.0,
        "gap_policy": policy,
        "interval_ms": interval_ms,
        "rewind_after": rewind_after,
    }
    one = WindowStore(window=3, n_features=2, capacity=2, **options)  # type: ignore[arg-type]
    many = WindowStore(window=3, n_features=2, capacity=2, **options)  # type: ignore[arg-type]
    ts = dict.fromkeys("abcd", 10 * MIN)
    original = windows_module._MIN_VECTORISED
    windows_module._MIN_VECTORISED = vectorise_from
    try:
        for b, batch in enumerate(batches):
            keys, stamps, rows = [], [], []
            for i, (key, step, missing) in enumerate(batch):
                ts[key] += step * MIN
                keys.append(key)
                stamps.append(ts[key])
                rows.append((float(100 * b + i), missing))
            array = np.array(rows, dtype=np.float32).reshape(-1, 2)
            expected, windows, intervals = [], [], []
            for key, stamp, values in zip(keys, stamps, array.copy(), strict=True):
                update = one.update(key, stamp, values, now=float(b))
                expected.append(update)
                if update.outcome == "appended" and update.ready:
                    windows.append(one.window_of(update.slot))
                    intervals.append(one.interval(update.slot))
            got = many.update_batch(keys, np.array(stamps, dtype=np.int64), array, now=float(b))
            assert [OUTCOMES[c] for c in got.outcome] == [u.outcome for u in expected]
            assert [GAP_ACTIONS[c] for c in got.gap] == [u.gap for u in expected]
            assert got.forecastable.tolist() == [
                i for i, u in enumerate(expected) if u.outcome == "appended" and u.ready
            ]
            np.testing.assert_array_equal(got.windows, np.reshape(windows, (-1, 3, 2)))
            assert got.intervals.tolist() == intervals
            assert sorted(many.keys()) == sorted(one.keys())
            for key in one.keys():  # noqa: SIM118 (a WindowStore is not a dict)
                assert many.snapshot(key) == one.snapshot(key), key
    finally:
        windows_module._MIN_VECTORISED = original


def test_a_batch_update_refuses_rows_of_the_wrong_shape() -> None:
    store = WindowStore(window=3, n_features=2)
    with pytest.raises(ValueError, match=r"expected 1 times and a \(1, 2\) array of rows"):
        store.update_batch(["k"], np.array([0]), np.zeros((1, 3), dtype=np.float32), now=0.0)
