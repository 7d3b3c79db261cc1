"""The sensor feed: sources, timestamps, order, malformed records, pacing, and the real thing."""

from __future__ import annotations

import argparse
import csv
import itertools
import os
import signal
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from stream_forecaster.cli import simulate as simulate_command
from stream_forecaster.data.samples import BEIJING_FEATURES, ENERGY_CSV, ENERGY_FEATURES
from stream_forecaster.model.bundle import BundleManifest, ModelBundle, TrainingInfo
from stream_forecaster.model.scaling import Scaling
from stream_forecaster.settings import ConfigError, KafkaSettings, ModelSettings, Settings
from stream_forecaster.simulate import replay as replay_module
from stream_forecaster.simulate.feed import LiveStamps, readings, timestamp_shift
from stream_forecaster.simulate.malformed import MALFORMED_KINDS, is_malformed, malformed_record
from stream_forecaster.simulate.pacing import Pacer
from stream_forecaster.simulate.replay import replay
from stream_forecaster.simulate.sources import load_feed
from stream_forecaster.wire.errors import INVALID_REASONS, InvalidRecord
from stream_forecaster.wire.readings import check_features, decode_reading, encode_reading
from stream_forecaster.wire.timestamps import check_not_ahead
from tests.harness.kafka_broker import consume

HOUR_MS = 3_600_000
CBWD_CODES = {"NE": 0.0, "NW": 1.0, "SE": 2.0, "cv": 3.0}


def parse(*argv: str) -> argparse.Namespace:
    """The options as `stream-forecaster simulate ARGV` would parse them."""
    parser = argparse.ArgumentParser(prog="stream-forecaster")
    sub = parser.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", type=Path)
    common.add_argument("--log-level")
    simulate_command.add_parser(sub, common)
    return parser.parse_args(["simulate", *argv])


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings whose model path holds no bundle (so nothing is taken from one)."""
    return Settings(model=ModelSettings(path=tmp_path / "no-models"))


@pytest.fixture(scope="module")
def small_beijing(beijing_head: Callable[[int], Path]) -> Path:
    """The first 700 hours of Beijing: 24 hours of NA pm2.5 first, more NA from hour 546."""
    return beijing_head(700)


def raw_rows(path: Path) -> list[tuple[int, dict[str, float | None]]]:
    """(ts, values) of each row, read independently of the code under test."""
    out = []
    with path.open(newline="") as handle:
        for row in csv.DictReader(handle):
            year, month, day, hour = (int(row[p]) for p in ("year", "month", "day", "hour"))
            stamp = datetime(year, month, day, hour, tzinfo=UTC)
            values: dict[str, float | None] = {
                f: None if row[f] == "NA" else float(row[f])
                for f in BEIJING_FEATURES
                if f != "cbwd"
            }
            values["cbwd"] = CBWD_CODES[row["cbwd"]]
            out.append((int(stamp.timestamp() * 1000), values))
    return out


# -- sources -------------------------------------------------------------------------------


def test_beijing_stations_replay_the_series_shifted_at_shared_times(
    small_beijing: Path, settings: Settings
) -> None:
    feed = load_feed(
        parse("--csv", str(small_beijing), "--keys", "3", "--shift-hours", "100"), settings
    )
    rows = raw_rows(small_beijing)
    got = list(readings(feed))

    assert len(got) == 3 * len(rows)
    for j, (key, ts, values) in enumerate(got):
        i, k = divmod(j, 3)
        assert key == f"beijing-{k:02d}"
        assert ts == rows[i][0]  # every station reports at row i's time
        assert values == rows[(i + 100 * k) % len(rows)][1]  # ... with row i + 100k's data
    assert feed.interval_ms == HOUR_MS


def test_beijing_defaults_to_four_stations_a_week_apart_over_the_whole_file(
    settings: Settings,
) -> None:
    feed = load_feed(parse(), settings)
    n = 43_824
    assert len(feed) == 4 * n
    assert feed.keys == ("beijing-00", "beijing-01", "beijing-02", "beijing-03")
    assert feed.features == BEIJING_FEATURES
    station = feed.values.reshape(n, 4, len(BEIJING_FEATURES))
    # Station 3 at the last hour wraps around to row n-1 + 3*168 - n = 503 of station 0.
    np.testing.assert_array_equal(station[n - 1, 3], station[503, 0])
    np.testing.assert_array_equal(station[:, 1], np.roll(station[:, 0], -168, axis=0))
    assert np.all(np.diff(feed.ts.reshape(n, 4), axis=1) == 0)


def test_beijing_sends_cbwd_as_codes_and_missing_pm25_as_null(
    small_beijing: Path, settings: Settings
) -> None:
    feed = load_feed(parse("--csv", str(small_beijing), "--keys", "1"), settings)
    got = list(readings(feed))
    key, ts, values = got[0]
    assert values["pm2.5"] is None and values["cbwd"] == CBWD_CODES["NW"]
    _, value = encode_reading(key, ts, values)
    assert b'"pm2.5":null' in value and b'"cbwd":1.0' in value
    assert sum(v["pm2.5"] is None for _, _, v in got) == sum(
        v["pm2.5"] is None for _, v in raw_rows(small_beijing)
    )
    assert {v["cbwd"] for _, _, v in got} <= set(CBWD_CODES.values())
    # The nulls are the NA rows only: never filled forward from the last measurement.
    assert got[24][2]["pm2.5"] == 129.0


def fake_bundle(path: Path, categories: tuple[str, ...], features: tuple[str, ...]) -> Path:
    """A valid bundle file (zero weights) whose manifest carries cbwd's categories."""
    n = len(features)
    manifest = BundleManifest(
        version="20260101T000000Z-00000000",
        features=features,
        target=features[0],
        window=24,
        categories={"cbwd": categories} if "cbwd" in features else {},
        scaling=Scaling(
            feature_mean=(0.0,) * n, feature_std=(1.0,) * n, target_mean=0.0, target_std=1.0
        ),
        training=TrainingInfo(created_at="2026-01-01T00:00:00Z", source="test"),
    )
    shapes = [(n, 200), (50, 200), (200,), (50, 1), (1,)]
    weights = tuple(np.zeros(s, dtype=np.float32) for s in shapes)
    return ModelBundle(manifest=manifest, weights=weights).save(path)


def test_beijing_follows_the_category_codes_of_the_model_bundle(
    small_beijing: Path, settings: Settings, tmp_path: Path
) -> None:
    reversed_codes = ("cv", "SE", "NW", "NE")
    bundle = fake_bundle(tmp_path / "b.sfmodel", reversed_codes, BEIJING_FEATURES)
    args = ["--csv", str(small_beijing), "--keys", "1"]

    with_model = load_feed(parse(*args, "--model", str(bundle)), settings)
    assert next(readings(with_model))[2]["cbwd"] == 2.0  # NW is third in the bundle
    from_settings = load_feed(parse(*args), Settings(model=ModelSettings(path=bundle)))
    assert next(readings(from_settings))[2]["cbwd"] == 2.0
    # A bundle at SF_MODEL__PATH for other features is not Beijing's: sorted codes.
    other = fake_bundle(tmp_path / "other.sfmodel", (), ("t", "rh"))
    unrelated = load_feed(parse(*args), Settings(model=ModelSettings(path=other)))
    assert next(readings(unrelated))[2]["cbwd"] == CBWD_CODES["NW"]


def test_energy_gives_nine_rooms_with_their_own_and_the_outdoor_readings(
    settings: Settings,
) -> None:
    feed = load_feed(parse("--source", "energy"), settings)
    assert feed.keys == tuple(f"room-{i}" for i in range(1, 10))
    assert feed.features == ENERGY_FEATURES
    assert feed.interval_ms == 600_000
    import lzma

    with lzma.open(ENERGY_CSV, "rt", newline="") as handle:
        first = next(csv.DictReader(handle))
    got = list(itertools.islice(readings(feed), 18))
    assert [key for key, _, _ in got] == [f"room-{i}" for i in range(1, 10)] * 2
    start = int(datetime(2016, 1, 11, 17, tzinfo=UTC).timestamp() * 1000)
    assert [ts for _, ts, _ in got] == [start] * 9 + [start + 600_000] * 9
    for i, (_, _, values) in enumerate(got[:9], start=1):
        assert values == {
            "T": float(first[f"T{i}"]),
            "RH": float(first[f"RH_{i}"]),
            **{f: float(first[f]) for f in ENERGY_FEATURES[2:]},
        }


def test_synthetic_is_deterministic_with_the_seed(settings: Settings) -> None:
    args = ["--source", "synthetic", "--keys", "3", "--features", "t,rh,p", "--interval-ms"]
    one = load_feed(parse(*args, "1000", "--seed", "7"), settings)
    again = load_feed(parse(*args, "1000", "--seed", "7"), settings)
    other = load_feed(parse(*args, "1000", "--seed", "8"), settings)

    np.testing.assert_array_equal(one.values, again.values)
    assert not np.allclose(one.values, other.values)
    assert one.keys == ("synthetic-000", "synthetic-001", "synthetic-002")
    assert one.features == ("t", "rh", "p")
    assert len(one) == 3 * 86_400 and np.all(np.diff(one.ts[::3]) == 1000)
    per_key = one.values.reshape(86_400, 3, 3)
    # A daily cycle: each key swings well beyond its noise, and the keys are out of phase.
    assert np.ptp(per_key[:, 0, 0]) > 8
    assert abs(np.corrcoef(per_key[:, 0, 0], per_key[:, 1, 0])[0, 1]) < 0.99


def test_readings_are_interleaved_in_time_order_across_keys(
    tmp_path: Path, settings: Settings
) -> None:
    path = tmp_path / "plant.csv"
    path.write_text(
        "time,sensor,t,mode\n"
        "2024-01-01 00:10:00,b,2,on\n"
        "2024-01-01 00:00:00,b,1,off\n"
        "2024-01-01 00:00:00,a,10,on\n"
        "2024-01-01 00:20:00,a,30,on\n"
        "2024-01-01 00:10:00,a,20,off\n"
    )
    args = ["--source", "csv", "--csv", str(path), "--features", "t,mode"]
    feed = load_feed(parse(*args, "--key-column", "sensor", "--categorical", "mode"), settings)
    t0 = int(datetime(2024, 1, 1, tzinfo=UTC).timestamp() * 1000)
    assert [(k, ts - t0, v) for k, ts, v in readings(feed)] == [
        ("b", 0, {"t": 1.0, "mode": 0.0}),  # keys in order of appearance at each time
        ("a", 0, {"t": 10.0, "mode": 1.0}),
        ("b", 600_000, {"t": 2.0, "mode": 1.0}),
        ("a", 600_000, {"t": 20.0, "mode": 0.0}),
        ("a", 1_200_000, {"t": 30.0, "mode": 1.0}),
    ]
    single = load_feed(parse(*args[:-1], "t"), settings)
    assert single.keys == ("plant",)


def test_csv_names_the_columns_when_a_feature_is_unknown(
    tmp_path: Path, settings: Settings
) -> None:
    path = tmp_path / "plant.csv"
    path.write_text("time,temp,rh\n2024-01-01 00:00:00,1,2\n")
    with pytest.raises(ConfigError, match=r"\['RH'\] are not .*: it has \['time', 'temp', 'rh'\]"):
        load_feed(parse("--source", "csv", "--csv", str(path), "--features", "temp,RH"), settings)
    with pytest.raises(ConfigError, match="needs --csv FILE"):
        load_feed(parse("--source", "csv"), settings)


def test_options_that_do_not_fit_are_refused(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(ConfigError, match="--key-column does not apply to --source beijing"):
        load_feed(parse("--key-column", "sensor"), settings)
    with pytest.raises(ConfigError, match=r"expected at most 9 .*, got 12"):
        load_feed(parse("--source", "energy", "--keys", "12"), settings)
    for argv in (["--rate", "10", "--speedup", "60"], ["--bad-ratio", "1.5"], ["--keys", "0"]):
        with pytest.raises(SystemExit):
            parse(*argv)
    err = capsys.readouterr().err
    assert "not allowed with argument --rate" in err
    assert "expected a share in [0, 1], got '1.5'" in err
    assert "expected a whole number >= 1, got '0'" in err


# -- timestamps ----------------------------------------------------------------------------


def test_shifted_timestamps_start_now_and_keep_the_spacing(
    small_beijing: Path, settings: Settings
) -> None:
    feed = load_feed(parse("--csv", str(small_beijing), "--keys", "2"), settings)
    now = 1_800_000_000_123
    shifted = list(readings(feed, shift_ms=timestamp_shift(feed, "shifted", now)))
    assert shifted[0][1] == shifted[1][1] == now
    assert np.all(np.diff([ts for key, ts, _ in shifted if key == "beijing-01"]) == HOUR_MS)

    original = next(readings(feed, shift_ms=timestamp_shift(feed, "original", now)))
    assert original[1] == int(datetime(2010, 1, 1, tzinfo=UTC).timestamp() * 1000)

    looped = list(itertools.islice(readings(feed, shift_ms=0, loop=True), 3 * len(feed)))
    stamps = [ts for key, ts, _ in looped if key == "beijing-00"]
    assert len(stamps) == 3 * 700 and np.all(np.diff(stamps) == HOUR_MS)  # never repeat
    assert looped[len(feed)][2] == looped[0][2]  # the second pass replays the same data


# -- malformed records ---------------------------------------------------------------------


@pytest.mark.parametrize("i", range(len(MALFORMED_KINDS)))
def test_every_malformed_kind_is_rejected_for_its_reason(i: int) -> None:
    values: dict[str, float | None] = {"pm2.5": None, "TEMP": -4.0, "cbwd": 1.0}
    key, value, kind = malformed_record(i, "beijing-01", 1_388_534_400_000, values)
    assert malformed_record(i + len(MALFORMED_KINDS), "beijing-01", 0, values)[2] == kind

    def serve_checks() -> None:  # what serve checks, in its order
        reading = decode_reading(key, value)
        check_features(reading, list(values))
        check_not_ahead(reading.ts, time.time() * 1000 + HOUR_MS, HOUR_MS, "here")

    with pytest.raises(InvalidRecord) as rejected:
        serve_checks()
    assert rejected.value.reason == MALFORMED_KINDS[kind]
    # ... while the reading it replaces is fine.
    good = decode_reading(*encode_reading("beijing-01", 1_388_534_400_000, values))
    check_features(good, list(values))


def test_malformed_kinds_cover_every_reason() -> None:
    assert len(MALFORMED_KINDS) >= 10
    assert set(MALFORMED_KINDS.values()) == set(INVALID_REASONS)


@pytest.mark.parametrize(("ratio", "expected"), [(0.0, 0), (0.1, 100), (0.25, 250), (1.0, 1000)])
def test_the_bad_ratio_is_exact_and_spread_evenly(ratio: float, expected: int) -> None:
    chosen = [i for i in range(1000) if is_malformed(i, ratio)]
    assert len(chosen) == expected
    if 0 < ratio < 1:
        assert set(np.diff(chosen)) == {round(1 / ratio)}


# -- pacing --------------------------------------------------------------------------------


class FakeClock:
    """A monotonic clock that only moves when slept on (or told to)."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds > 0
        self.sleeps.append(seconds)
        self.now += seconds


def test_pacer_by_rate_sleeps_until_each_due_time() -> None:
    clock = FakeClock()
    pacer = Pacer(rate=10, burst_s=0, clock=clock, sleep=clock.sleep)
    for i in range(6):
        pacer.wait(i, 0)
        assert clock.now == pytest.approx(100.0 + i / 10)
    assert clock.sleeps == pytest.approx([0.1] * 5)
    clock.now += 0.03  # time spent sending is not added on top
    pacer.wait(6, 0)
    assert clock.now == pytest.approx(100.6)


def test_pacer_sends_high_rates_in_small_bursts() -> None:
    clock = FakeClock()
    pacer = Pacer(rate=2000, burst_s=0.005, clock=clock, sleep=clock.sleep)
    for i in range(1000):
        pacer.wait(i, 0)
        assert clock.now >= pacer.due(i, 0) - 0.005  # never more than a burst ahead
    assert 40 <= len(clock.sleeps) <= 110 and min(clock.sleeps) > 0.005
    assert clock.now == pytest.approx(100 + 999 / 2000, abs=0.006)


def test_pacer_by_speedup_follows_data_time() -> None:
    clock = FakeClock()
    pacer = Pacer(speedup=3600, clock=clock, sleep=clock.sleep)
    t0 = 1_262_304_000_000
    for hour in range(4):
        for _key in range(3):
            pacer.wait(0, t0 + hour * HOUR_MS)
            assert clock.now == pytest.approx(100.0 + hour)  # an hour of data per second
    assert clock.sleeps == pytest.approx([1.0, 1.0, 1.0])


def test_pacer_does_not_flood_after_a_stall() -> None:
    clock = FakeClock()
    pacer = Pacer(rate=10, burst_s=0, max_lag_s=1.0, clock=clock, sleep=clock.sleep)
    pacer.wait(0, 0)
    clock.now += 5.0  # the broker stalled for 5 s
    assert pacer.wait(1, 0) == 0.0
    assert pacer.due(2, 0) == pytest.approx(clock.now + 0.1)  # schedule restarts from now


def test_live_stamps_follow_the_schedule_and_never_repeat_for_a_key() -> None:
    clock = FakeClock()
    pacer = Pacer(rate=4, burst_s=0, max_lag_s=1.0, clock=clock, sleep=clock.sleep)
    live = LiveStamps(start_ms=1_800_000_000_000)
    stamps = []
    for i, key in enumerate("abab"):
        pacer.wait(i, 0)
        stamps.append(live.stamp(key, pacer.since_start_ms(i, 0)))
    assert stamps == [1_800_000_000_000 + 250 * i for i in range(4)]
    clock.now += 5.0  # a stall: the schedule restarts later, the stamps move on with it
    pacer.wait(4, 0)
    assert live.stamp("a", pacer.since_start_ms(4, 0)) == 1_800_000_005_750
    fast = LiveStamps(start_ms=0)
    assert [fast.stamp("a", 0) for _ in range(3)] == [0, 1, 2]  # one ms apart at least
    assert fast.stamp("b", 0) == 0


# -- the command without Kafka -------------------------------------------------------------


class FakeFuture:
    def __init__(self, error: Exception | None) -> None:
        self.error = error

    def add_errback(self, callback: Callable[[BaseException], None]) -> FakeFuture:
        if self.error is not None:
            callback(self.error)
        return self


class FakeProducer:
    """Records sends; at send number ``stop_at`` it delivers a SIGTERM to this process."""

    def __init__(self, stop_at: int | None = None, fail_every: int = 0) -> None:
        self.sent: list[tuple[str, bytes | None, bytes]] = []
        self.stop_at, self.fail_every = stop_at, fail_every
        self.flushed = self.closed = False

    def send(self, topic: str, *, key: bytes | None, value: bytes) -> FakeFuture:
        self.sent.append((topic, key, value))
        if len(self.sent) == self.stop_at:
            os.kill(os.getpid(), signal.SIGTERM)
        fail = self.fail_every and len(self.sent) % self.fail_every == 0
        return FakeFuture(RuntimeError("broker said no") if fail else None)

    def flush(self, timeout: float | None = None) -> None:
        self.flushed = True

    def close(self, timeout: float | None = None) -> None:
        self.closed = True


def run_with(
    monkeypatch: pytest.MonkeyPatch, producer: FakeProducer, settings: Settings, *argv: str
) -> int:
    monkeypatch.setattr(replay_module, "_producer", lambda _settings: producer)
    return replay(parse(*argv), settings)


def test_sigterm_stops_cleanly_flushes_and_reports(
    monkeypatch: pytest.MonkeyPatch, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    before = signal.getsignal(signal.SIGTERM)
    producer = FakeProducer(stop_at=25)
    argv = ["--source", "synthetic", "--rate", "100000", "--bad-ratio", "0.2", "--topic", "in"]
    assert run_with(monkeypatch, producer, settings, *argv) == 0

    assert 25 <= len(producer.sent) < 5760 and producer.flushed and producer.closed
    assert {topic for topic, _, _ in producer.sent} == {"in"}
    assert signal.getsignal(signal.SIGTERM) == before
    out = capsys.readouterr().out
    assert f"sent {len(producer.sent)} records" in out and "0 send errors" in out


def test_send_errors_are_counted_and_fail_the_run(
    monkeypatch: pytest.MonkeyPatch, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    producer = FakeProducer(fail_every=10)
    argv = ["--source", "synthetic", "--keys", "2", "--limit", "100", "--rate", "100000"]
    assert run_with(monkeypatch, producer, settings, *argv) == 1
    assert len(producer.sent) == 100
    assert "sent 100 records (100 readings, 0 malformed), 10 send errors" in capsys.readouterr().out
    assert producer.sent[0][0] == settings.topics.input


# -- the real broker -----------------------------------------------------------------------


@pytest.mark.kafka
def test_simulate_feeds_a_real_topic(
    kafka_bootstrap: str,
    new_topic: Callable[..., str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:

    topic = new_topic(partitions=3)
    settings = Settings(
        kafka=KafkaSettings(bootstrap_servers=kafka_bootstrap),
        model=ModelSettings(path=tmp_path),
    )
    args = parse("--keys", "3", "--limit", "300", "--rate", "2000", "--bad-ratio", "0.1")
    args.topic = topic
    started_ms = time.time_ns() // 1_000_000
    assert replay(args, settings) == 0
    finished_ms = time.time_ns() // 1_000_000
    assert "sent 300 records (270 readings, 30 malformed), 0 send errors" in capsys.readouterr().out

    received = consume(kafka_bootstrap, topic, 300, timeout=60)
    assert len(received) == 300

    good: dict[str, list[int]] = {}
    reasons: Counter[str] = Counter()
    for record in received:
        assert started_ms - 1000 <= record.timestamp <= finished_ms + 1000  # wall clock at send
        try:
            reading = decode_reading(record.key, record.value)
            check_features(reading, BEIJING_FEATURES)
            check_not_ahead(reading.ts, finished_ms + HOUR_MS, HOUR_MS, "here")
        except InvalidRecord as exc:
            reasons[exc.reason] += 1
            continue
        good.setdefault(reading.key, []).append(reading.ts)
    assert sorted(good) == ["beijing-00", "beijing-01", "beijing-02"]
    assert [len(stamps) for stamps in good.values()] == [90, 90, 90]
    kinds = list(MALFORMED_KINDS)
    assert reasons == Counter(MALFORMED_KINDS[kinds[i % len(kinds)]] for i in range(30))
    for stamps in good.values():  # live: in order per key, each stamped as it was sent
        assert np.all(np.diff(stamps) > 0)
        assert started_ms - 1000 <= stamps[0] and stamps[-1] <= finished_ms + 1000
