"""The batch processor with fake records: what comes out for what goes in."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence

import numpy as np
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as examples
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from stream_forecaster.serving.batch import BatchOutput, Restored
from stream_forecaster.serving.engine import InferenceEngine
from stream_forecaster.serving.pipeline import BatchProcessor
from stream_forecaster.serving.recorder import ServeRecorder
from stream_forecaster.settings import Settings
from stream_forecaster.wire.errors import INVALID_REASONS
from stream_forecaster.wire.readings import encode_reading
from stream_forecaster.wire.records import InputRecord, Record
from tests.harness.bundles import untrained_bundle

HOUR = 3_600_000


class Recorded(BatchProcessor):
    """The processor as the serve loop drives it: what each batch and each restore did goes
    to the metrics recorder."""

    def __init__(
        self,
        settings: Settings,
        registry: CollectorRegistry | None = None,
        clock: Callable[[], float] = lambda: 0.0,
    ) -> None:
        super().__init__(settings, clock=clock)
        self.recorder = ServeRecorder(registry or CollectorRegistry())

    def process(self, records: Sequence[InputRecord]) -> BatchOutput:
        out = super().process(records)
        self.recorder.batch(out.report, self.scorer, seconds=0.0)
        return out

    def load_windows(self, partition: int, snapshots: dict[str, bytes]) -> Restored:
        restored = super().load_windows(partition, snapshots)
        self.recorder.restored(0.0, restored, self.active_keys)
        return restored


@pytest.fixture(scope="module")
def engine() -> InferenceEngine:
    return InferenceEngine(untrained_bundle(window=3))


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def processor(engine: InferenceEngine, registry: CollectorRegistry) -> BatchProcessor:
    p = Recorded(Settings(), registry)
    p.use_engine(engine)
    return p


def reading(key: str, i: int, offset: int, partition: int = 0) -> Record:
    k, v = encode_reading(key, i * HOUR, {"t": 10.0 + i, "rh": 20.0 + i, "p": 30.0 - i})
    return Record("in", partition, offset, 1_700_000_000_000 + i, k, v)


def test_one_forecast_per_reading_once_the_window_is_full(
    processor: BatchProcessor, engine: InferenceEngine, registry: CollectorRegistry
) -> None:
    records = [reading(k, i, offset=2 * i + j) for i in range(5) for j, k in enumerate("ab")]
    out = processor.process(records)

    assert [r.key for r in out.forecasts] == [b"a", b"b"] * 3
    first = json.loads(out.forecasts[0].value or b"")
    assert first["key"] == "a"
    assert first["window_end_ts"] == 2 * HOUR
    assert first["ts"] == 3 * HOUR  # newest reading + the learned interval
    assert first["model_version"] == engine.version
    window = np.array([[10 + i, 20 + i, 30 - i] for i in range(3)], dtype=np.float32)
    assert first["forecast"] == pytest.approx(float(engine.forecast(window[None])[0]), rel=1e-6)
    assert out.offsets == {("in", 0): 10}
    assert out.dead_letters == []
    assert registry.get_sample_value("sf_records_total", {"topic": "in"}) == 10
    assert registry.get_sample_value("sf_batch_size_windows_count") == 1  # one inference call
    assert registry.get_sample_value("sf_batch_size_windows_sum") == 6
    assert registry.get_sample_value("sf_active_keys") == 2


def test_bad_records_become_dead_letters_with_original_bytes(
    processor: BatchProcessor, registry: CollectorRegistry
) -> None:
    bad = [
        Record("in", 1, 7, 5, b"a", b"{oops"),
        Record("in", 1, 8, 5, b"a", b'{"ts": 1, "values": {"t": 1, "rh": 2}}'),
    ]
    out = processor.process([reading("a", 0, 6, partition=1), *bad])

    assert [d.value for d in out.dead_letters] == [b"{oops", bad[1].value]
    assert [d.key for d in out.dead_letters] == [b"a", b"a"]
    headers = dict(out.dead_letters[1].headers or [])
    assert headers["sf.reason"] == b"missing_feature"
    assert b"expected 3 features, got 2 in record a@offset 8" in headers["sf.detail"]
    assert headers["sf.source.topic"] == b"in"
    assert headers["sf.source.partition"] == b"1"
    assert headers["sf.source.offset"] == b"8"
    assert out.dead_letters[0].topic == "sensor-readings-dead-letter"
    assert out.offsets == {("in", 1): 9}
    assert registry.get_sample_value("sf_records_invalid_total", {"reason": "not_json"}) == 1


def test_time_rules_are_counted(processor: BatchProcessor, registry: CollectorRegistry) -> None:
    records = [reading("a", i, i) for i in range(3)]
    records += [reading("a", 2, 3), reading("a", 1, 4)]  # a repeat, then an older one
    out = processor.process(records)
    assert len(out.forecasts) == 1
    assert registry.get_sample_value("sf_readings_ignored_total", {"rule": "duplicate"}) == 1
    assert registry.get_sample_value("sf_readings_ignored_total", {"rule": "late"}) == 1


def test_a_new_model_with_the_same_shape_keeps_the_windows(
    processor: BatchProcessor,
) -> None:
    processor.process([reading("a", i, i) for i in range(3)])
    processor.use_engine(InferenceEngine(untrained_bundle(window=3, seed=9)))
    out = processor.process([reading("a", 3, 3)])
    assert len(out.forecasts) == 1  # no re-warm


def test_a_model_with_another_window_starts_afresh(processor: BatchProcessor) -> None:
    processor.process([reading("a", i, i) for i in range(3)])
    processor.use_engine(InferenceEngine(untrained_bundle(window=2)))
    assert processor.process([reading("a", 3, 3)]).forecasts == []
    assert len(processor.process([reading("a", 4, 4)]).forecasts) == 1


def test_changed_windows_go_to_the_changelog_partition_of_their_input(
    processor: BatchProcessor, registry: CollectorRegistry
) -> None:
    records = [reading("a", 0, 0, partition=2), reading("b", 0, 0, partition=0)]
    records += [reading("a", 1, 1, partition=2), reading("a", 1, 2, partition=2)]  # + a repeat
    out = processor.process(records)

    topic = Settings().changelog_topic()
    assert out.changed == {"a": 2, "b": 0}
    changelog = processor.changelog(out.changed)
    assert [(r.topic, r.key, r.partition) for r in changelog] == [
        (topic, b"a", 2),
        (topic, b"b", 0),
    ]
    assert processor.store is not None
    assert changelog[0].value == processor.store.snapshot("a")
    assert processor.process([reading("a", 1, 3, partition=2)]).changed == {}  # unchanged
    processor.forget_partitions({0})
    assert [r.key for r in processor.changelog(out.changed)] == [b"a"]  # only those held


def test_windows_of_a_partition_are_dropped_and_loaded_back(
    processor: BatchProcessor, engine: InferenceEngine, registry: CollectorRegistry
) -> None:
    first = processor.process(
        [reading(k, i, i, p) for i in range(2) for k, p in (("a", 1), ("b", 0))]
    )
    snapshots = {
        r.key.decode(): r.value for r in processor.changelog(first.changed) if r.key and r.value
    }

    assert processor.forget_partitions({1}) == 1
    assert processor.store is not None and "a" not in processor.store and "b" in processor.store
    assert processor.load_windows(1, {"a": snapshots["a"], "z": b"junk"}).windows == 1
    assert registry.get_sample_value("sf_state_snapshots_skipped_total") == 1
    out = processor.process([reading("a", 2, 2, partition=1)])
    assert [r.key for r in out.forecasts] == [b"a"]  # the window was full again at once


def test_evicted_keys_leave_tombstones(engine: InferenceEngine) -> None:
    now = [0.0]
    p = Recorded(Settings(), clock=lambda: now[0])
    p.use_engine(engine)
    p.process([reading("a", 0, 0, partition=1)])
    now[0] = Settings().windows.key_ttl_s + 1
    [tombstone] = p.evict_idle().tombstones
    assert (tombstone.key, tombstone.value, tombstone.partition) == (b"a", None, 1)
    off = Settings(state={"changelog": False})
    q = Recorded(off, clock=lambda: now[0])
    q.use_engine(engine)
    assert q.changelog(q.process([reading("a", 0, 0)]).changed) == []


def test_forecasts_are_scored_when_their_actual_arrives_and_get_intervals(
    engine: InferenceEngine,
) -> None:
    registry = CollectorRegistry()
    settings = Settings(scoring={"min_errors": 2, "window": 100})
    p = Recorded(settings, registry)
    p.use_engine(engine)
    records = [reading("a", i, i) for i in range(8)]
    forecasts = [json.loads(r.value or b"") for r in p.process(records).forecasts]

    # Readings 0..7, window 3: forecasts for hours 3..8; those for 3..7 have their actual.
    actual = {i * HOUR: 10.0 + i for i in range(8)}
    scored = [f for f in forecasts if f["ts"] in actual]
    errors = [abs(f["forecast"] - actual[f["ts"]]) for f in scored]
    persistence = [1.0] * len(scored)  # t rises by 1 per hour
    version = {"model_version": engine.version}
    assert len(scored) == 5
    assert registry.get_sample_value("sf_online_mae", version) == pytest.approx(
        sum(errors) / len(errors), rel=1e-9
    )
    assert registry.get_sample_value("sf_online_persistence_mae", version) == pytest.approx(1.0)
    assert registry.get_sample_value("sf_online_skill", version) == pytest.approx(
        1 - (sum(errors) / len(errors)) / (sum(persistence) / len(persistence)), rel=1e-9
    )
    assert registry.get_sample_value("sf_forecasts_pending") == 1  # hour 8 waits
    # No interval until two errors are known (intervals are set per batch, before the
    # batch's own actuals are scored); then lower < forecast < upper.
    assert all(f["lower"] is None and f["upper"] is None for f in forecasts)
    [later] = [json.loads(r.value or b"") for r in p.process([reading("a", 8, 8)]).forecasts]
    assert later["lower"] < later["forecast"] < later["upper"]
    assert registry.get_sample_value("sf_interval_half_width") == pytest.approx(
        later["upper"] - later["forecast"]
    )


def test_mc_dropout_intervals_come_with_every_forecast(engine: InferenceEngine) -> None:
    settings = Settings(scoring={"interval_method": "mc_dropout", "mc_samples": 40})
    p = Recorded(settings)
    p.use_engine(engine)
    out = p.process([reading(k, i, 2 * i + j) for i in range(4) for j, k in enumerate("ab")])
    forecasts = [json.loads(r.value or b"") for r in out.forecasts]
    assert len(forecasts) == 4
    for f in forecasts:  # no calibration period: the spread comes from dropout samples
        assert f["lower"] is not None and f["upper"] is not None
        assert f["lower"] <= f["forecast"] <= f["upper"]
        assert f["upper"] - f["lower"] > 0


# Hostile inputs for the whole batch path: what a broken or malicious producer can send.
_TEXT = st.text(st.characters(categories=["Cs", "L", "N", "P", "Zs", "Cc"]), max_size=12)
_NUMBERS = (
    st.integers()
    | st.integers(min_value=10**300, max_value=10**400)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from([1.7976931348623157e308, -0.0, 5e-324])
)
_SCALARS = st.none() | st.booleans() | _NUMBERS | _TEXT
_JSON = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_TEXT, inner, max_size=3),
    max_leaves=8,
)
_FEATURES = st.sampled_from(["t", "rh", "p"]) | _TEXT
_DOCUMENTS = st.fixed_dictionaries(
    {
        "ts": _NUMBERS
        | _TEXT
        | st.sampled_from(["2023-11-14T22:13:20Z", "9999-12-31T23:00-05:00"]),
        "values": st.dictionaries(_FEATURES, _SCALARS, max_size=4) | _JSON,
    },
    optional={"key": _TEXT | _JSON, "extra": _JSON},
)


@st.composite
def _hostile_value(draw: st.DrawFn) -> bytes | None:
    kind = draw(st.sampled_from(["bytes", "json", "document", "null", "deep"]))
    if kind == "bytes":
        return draw(st.binary(max_size=64))
    if kind == "null":
        return None
    if kind == "deep":  # deeper than either JSON parser recurses
        return b'{"ts": 1, "values": ' + b"[" * draw(st.integers(900, 3000))
    document = draw(_DOCUMENTS if kind == "document" else _JSON)
    text = json.dumps(document, ensure_ascii=draw(st.booleans()))
    return text.encode("utf-8", "surrogatepass")  # a lone surrogate makes invalid UTF-8


@examples(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    hostile=st.lists(
        st.tuples(st.none() | st.binary(max_size=8) | st.just(b"a"), _hostile_value()),
        min_size=1,
        max_size=8,
    )
)
def test_no_record_breaks_a_batch(
    engine: InferenceEngine, hostile: list[tuple[bytes | None, bytes | None]]
) -> None:
    """Whatever arrives, the batch completes: each record is a dead letter with its original
    bytes and a documented reason, or a reading; the offsets move past all of them."""
    processor = BatchProcessor(Settings())
    processor.use_engine(engine)
    good = [reading("a", i, offset=i) for i in range(3)]  # a full window, so inference runs
    bad = [Record("in", 0, 3 + i, 0, key, value) for i, (key, value) in enumerate(hostile)]
    records = [*good, *bad, reading("a", 3, offset=3 + len(bad))]

    out = processor.process(records)

    assert out.offsets == {("in", 0): len(records)}
    dead = {(d.key, d.value) for d in out.dead_letters}
    assert dead <= {(r.key, r.value) for r in bad}
    assert sum(out.report.invalid.values()) == len(out.dead_letters)
    assert set(out.report.invalid) <= set(INVALID_REASONS)
    for letter in out.dead_letters:
        headers = dict(letter.headers or [])
        assert headers["sf.reason"].decode() in INVALID_REASONS
        assert headers["sf.detail"]
    for forecast in out.forecasts:
        assert math.isfinite(json.loads(forecast.value or b"")["forecast"])


def test_a_reading_stamped_far_ahead_is_a_dead_letter_and_the_key_goes_on(
    engine: InferenceEngine, registry: CollectorRegistry
) -> None:
    now_s = 10 * HOUR / 1000  # the wall clock: reading 10's time
    p = Recorded(Settings(), registry)
    p.wall_clock = lambda: now_s
    p.use_engine(engine)
    year_ahead = Record(
        "in",
        0,
        3,
        0,
        *encode_reading("a", 10 * HOUR + 365 * 24 * HOUR, {"t": 1.0, "rh": 2.0, "p": 3.0}),
    )
    out = p.process([*(reading("a", i, i) for i in range(3)), year_ahead, reading("a", 3, 4)])

    assert [d.value for d in out.dead_letters] == [year_ahead.value]
    headers = dict(out.dead_letters[0].headers or [])
    assert headers["sf.reason"] == b"future_ts"
    assert b"ahead of the wall clock" in headers["sf.detail"]
    assert b"a@offset 3" in headers["sf.detail"]
    assert len(out.forecasts) == 2  # readings 2 and 3: the key was not moved a year on
    assert registry.get_sample_value("sf_records_invalid_total", {"reason": "future_ts"}) == 1


def test_a_key_thrown_ahead_forecasts_again_after_rewind_after_readings(
    engine: InferenceEngine, registry: CollectorRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    """With no future limit, one reading a year ahead becomes the key's newest time; the
    correct readings after it are late until ``rewind_after`` of them restart the window."""
    p = Recorded(Settings(windows={"max_future_ms": None, "rewind_after": 3}), registry)
    p.use_engine(engine)
    glitch = Record(
        "in", 0, 3, 0, *encode_reading("a", 365 * 24 * HOUR, {"t": 1.0, "rh": 2.0, "p": 3.0})
    )
    p.process([*(reading("a", i, i) for i in range(3)), glitch])

    out = p.process([reading("a", i, offset=i + 1) for i in range(3, 10)])

    assert registry.get_sample_value("sf_readings_ignored_total", {"rule": "late"}) == 2
    assert registry.get_sample_value("sf_window_gaps_total", {"action": "rewind"}) == 1
    # readings 5, 6, 7 refill the window (3) from reading 5; 7, 8, 9 forecast
    assert [json.loads(f.value or b"")["window_end_ts"] for f in out.forecasts] == [
        i * HOUR for i in (7, 8, 9)
    ]
    assert "key a went back in time: 3 late readings in a row" in caplog.text
