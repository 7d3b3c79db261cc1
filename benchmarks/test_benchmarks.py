"""The benchmark suites' own arithmetic and the memory measurement, at a small scale (the
suites themselves run with ``make bench``, not in the test suite)."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import end_to_end, memory
from benchmarks.harness import quantile_between
from benchmarks.profile import summary
from stream_forecaster.model.untrained import untrained_bundle


def test_rate_between_10_and_90_percent_of_the_backlog() -> None:
    # 100 records: 10 reached at t=1, 90 at t=5 (linear in between): 80 records in 4 s.
    samples = [(0.0, 0.0), (1.0, 10.0), (5.0, 90.0), (6.0, 100.0)]
    assert end_to_end._rate_between(samples, 100) == pytest.approx(20.0)
    with pytest.raises(ValueError, match="not reached"):
        end_to_end._rate_between([(0.0, 0.0), (1.0, 50.0)], 100)


def test_histogram_quantile_interpolates_like_promql() -> None:
    before = {0.01: 0.0, 0.05: 0.0, float("inf"): 0.0}
    after = {0.01: 50.0, 0.05: 100.0, float("inf"): 100.0}
    assert quantile_between(0.5, before, after) == pytest.approx(0.01)
    assert quantile_between(0.75, before, after) == pytest.approx(0.03)


def test_profile_summary_reads_py_spy_collapsed_stacks(tmp_path: Path) -> None:
    raw = tmp_path / "profile.txt"
    raw.write_text(
        "thread (1): MainThread;run (service.py:10);process (pipeline.py:20) 6\n"
        "thread (1): MainThread;run (service.py:10);send (kafka/producer/kafka.py:5) 3\n"
        "thread (2): io;select (selectors.py:1) 1\n"
    )
    main = summary(raw, thread="MainThread")
    name, own, total = main[0]
    assert name == "process (pipeline.py)"
    assert (own, total) == pytest.approx((6 / 9, 6 / 9))
    assert ("run (service.py)", 0.0, 1.0) not in main  # no own time: not among the busiest
    assert len(summary(raw)) == 3


def test_memory_per_key_is_measured_with_every_key_active(tmp_path: Path) -> None:
    bundle = untrained_bundle(tuple(f"f{i}" for i in range(8)), 24)
    result = memory._measure(3000, bundle.save(tmp_path), progress=lambda _: None)
    assert result["keys"] == 3000
    assert result["store_bytes_per_key"] >= 24 * 8 * 4
    assert result["after"] >= result["before"]
