"""The ``simulate`` command: a sensor feed that replays real data into the input topic.

Sources: the Beijing PM2.5 file as several stations (each one the series shifted by a
week), the house's nine rooms, any CSV, or synthetic daily sinusoids. Readings go out in
time order, interleaved across keys, paced on a monotonic clock; a share of them can be
replaced by malformed records to exercise the dead-letter path. The pure parts
(:func:`load_feed`, :func:`readings`, :func:`malformed_record`, :class:`Pacer`) need no Kafka.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import math
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import numpy.typing as npt

from stream_forecaster.cli.arguments import checked, csv_list, positive_float
from stream_forecaster.data.samples import (
    BEIJING_CSV,
    BEIJING_FEATURES,
    ENERGY_CSV,
    ENERGY_FEATURES,
)
from stream_forecaster.data.tables import (
    Table,
    TableSpec,
    guess_time_columns,
    read_header,
    read_table,
    sampling_interval_ms,
)
from stream_forecaster.settings.config import ConfigError, Settings
from stream_forecaster.wire.readings import (
    DEFAULT_MAX_RECORD_BYTES,
    encode_reading,
    format_timestamp,
)

if TYPE_CHECKING:
    from stream_forecaster.model.bundle import ModelBundle

log = logging.getLogger(__name__)

SYNTHETIC_START_MS: Final = 1_704_067_200_000  # 2024-01-01T00:00:00Z: synthetic data time
DAY_MS: Final = 86_400_000
PROGRESS_EVERY_S: Final = 5.0
#: Malformed record kinds, in rotation order, each with the reason it is rejected for.
MALFORMED_KINDS: Final = {
    "not_json": "not_json",
    "json_array": "not_object",
    "missing_ts": "missing_ts",
    "bad_ts_string": "bad_ts",
    "values_not_object": "bad_values",
    "string_value": "bad_values",
    "nan_literal": "non_finite",
    "unknown_field": "unknown_field",
    "no_key": "no_key",
    "oversized": "oversized",
    "wrong_feature_names": "unknown_feature",
    "missing_feature": "missing_feature",
    "missing_values": "missing_values",
    "not_utf8": "not_utf8",
}
# The options only some sources use; given for another source, they are an error.
_ONLY_FOR: Final = {
    **dict.fromkeys(("key_column", "time_column", "time_parts", "categorical"), ("csv",)),
    **dict.fromkeys(("interval_ms", "seed"), ("synthetic",)),
    "shift_hours": ("beijing",),
    "model": ("beijing", "csv"),
    "features": ("csv", "synthetic"),
    "csv": ("beijing", "energy", "csv"),
    "keys": ("beijing", "energy", "synthetic"),
}

Reading = tuple[str, int, dict[str, float | None]]
_Series = tuple[str, npt.NDArray[np.int64], npt.NDArray[np.float64]]


@dataclass(frozen=True)
class Feed:
    """One pass over the data: every reading in send order (time, then key).

    Args:
        keys: the series keys, which ``key_index`` (shape ``(m,)``) points into.
        features: the feature names, the columns of ``values`` (``(m, n_features)``, NaN
            is sent as null).
        ts: each reading's data time, epoch ms, shape ``(m,)``.
        interval_ms: the sampling interval; a pass spans ``ts[-1] - ts[0] + interval_ms``.
    """

    keys: tuple[str, ...]
    features: tuple[str, ...]
    key_index: npt.NDArray[np.int64]
    ts: npt.NDArray[np.int64]
    values: npt.NDArray[np.float64]
    interval_ms: int

    def __len__(self) -> int:
        return len(self.ts)

    @classmethod
    def merge(cls, series: Sequence[_Series], features: Sequence[str]) -> Feed:
        """Interleave per-key series by time; readings at one time go in key order."""
        key_index = np.concatenate([np.full(len(ts), k) for k, (_, ts, _) in enumerate(series)])
        ts = np.concatenate([s[1] for s in series])
        order = np.lexsort((key_index, ts))
        interval = max(sampling_interval_ms(s[1]) for s in series)
        values = np.concatenate([s[2] for s in series])[order]
        keys = tuple(s[0] for s in series)
        return cls(keys, tuple(features), key_index[order], ts[order], values, interval or 1000)


def readings(feed: Feed, *, shift_ms: int = 0, loop: bool = False) -> Iterator[Reading]:
    """The feed's readings as ``(key, ts_ms, values)``, NaN as ``None``.

    Args:
        feed: the data.
        shift_ms: added to every data time (see :func:`timestamp_shift`).
        loop: repeat forever, each pass one data span later, so times never repeat.
    """
    span = int(feed.ts[-1] - feed.ts[0]) + feed.interval_ms
    for n in itertools.count():
        offset = shift_ms + n * span
        for k, ts, row in zip(feed.key_index.tolist(), feed.ts.tolist(), feed.values, strict=True):
            values = dict(zip(feed.features, row.tolist(), strict=True))
            yield feed.keys[k], ts + offset, {f: _or_none(v) for f, v in values.items()}
        if not loop:
            return


def _or_none(value: float) -> float | None:
    return None if math.isnan(value) else value


def timestamp_shift(feed: Feed, mode: str, now_ms: int) -> int:
    """What to add to data times: ``shifted`` makes the first reading ``now_ms``."""
    return now_ms - int(feed.ts[0]) if mode == "shifted" else 0


# -- sources -------------------------------------------------------------------------------


def load_feed(args: argparse.Namespace, settings: Settings) -> Feed:
    """The feed the parsed ``simulate`` options describe.

    Raises:
        ConfigError: an option does not fit the source.
        DataError: the CSV cannot be read as asked (from :func:`read_table`).
        BundleError: ``--model`` is not a valid bundle.
    """
    for name, sources in _ONLY_FOR.items():
        if getattr(args, name) is not None and args.source not in sources:
            raise ConfigError(
                f"--{name.replace('_', '-')} does not apply to --source {args.source}, "
                f"only to --source {' or '.join(sources)}"
            )
    if args.source == "synthetic":
        features = args.features or ["value", "aux"]
        seed = 0 if args.seed is None else args.seed
        return synthetic_feed(args.keys or 4, features, args.interval_ms or 60_000, seed)
    if args.source == "energy":
        if (args.keys or 9) > 9:
            raise ConfigError(f"--keys: expected at most 9 (the house's rooms), got {args.keys}")
        return energy_feed(args.csv or ENERGY_CSV, rooms=args.keys or 9)
    if args.source == "csv":
        return csv_feed(args, settings)
    bundle = _bundle(args.model, settings, BEIJING_FEATURES)
    categories = bundle.manifest.categories.get("cbwd") if bundle else None
    shift = 24 * 7 if args.shift_hours is None else args.shift_hours
    return beijing_feed(args.csv or BEIJING_CSV, args.keys or 4, shift, categories)


def beijing_feed(
    path: Path, keys: int = 4, shift_rows: int = 168, categories: Sequence[str] | None = None
) -> Feed:
    """The Beijing series as stations ``beijing-00``, ``beijing-01``, ...

    Args:
        path: the Beijing CSV.
        keys: the number of stations.
        shift_rows: reading i of station k has the values of row ``(i + k*shift_rows) mod
            n`` and the time of row i.
        categories: the cbwd categories in code order (default: sorted, as ``train`` does).
    """
    spec = TableSpec(
        features=BEIJING_FEATURES,
        target="pm2.5",
        time_parts=("year", "month", "day", "hour"),
        categorical=("cbwd",),
        categories={"cbwd": tuple(categories)} if categories else {},
    )
    ((_, ts, values),) = _measured(read_table(path, spec), spec)
    shifted = [(f"beijing-{k:02d}", ts, np.roll(values, -k * shift_rows, 0)) for k in range(keys)]
    return Feed.merge(shifted, BEIJING_FEATURES)


def energy_feed(path: Path, rooms: int = 9) -> Feed:
    """The house's rooms as keys ``room-1``.., each its T_i, RH_i and the outdoor columns."""
    outdoor = ENERGY_FEATURES[2:]
    columns = (*(f"T{i}" for i in range(1, rooms + 1)), *(f"RH_{i}" for i in range(1, rooms + 1)))
    spec = TableSpec(features=(*columns, *outdoor), target="T1", time_column="date")
    ((_, ts, values),) = _measured(read_table(path, spec), spec)
    shared = list(range(2 * rooms, 2 * rooms + len(outdoor)))
    series = [(f"room-{i + 1}", ts, values[:, [i, rooms + i, *shared]]) for i in range(rooms)]
    return Feed.merge(series, ENERGY_FEATURES)


def csv_feed(args: argparse.Namespace, settings: Settings) -> Feed:
    """Any CSV; features from --features, SF_MODEL__FEATURES or the model bundle."""
    if args.csv is None:
        raise ConfigError("--source csv needs --csv FILE")
    header = [h.strip() for h in read_header(args.csv)]
    bundle = _bundle(args.model, settings, None)
    features = args.features or settings.model.features or (bundle and bundle.manifest.features)
    if not features:
        raise ConfigError(
            "--source csv: no features; pass --features a,b,c, --model BUNDLE or set "
            f"SF_MODEL__FEATURES; the columns of {args.csv} are {header}"
        )
    unknown = [f for f in features if f not in header]
    if unknown:
        raise ConfigError(f"features {unknown} are not columns of {args.csv}: it has {header}")
    known = dict(bundle.manifest.categories) if bundle else {}
    categorical = tuple(args.categorical or [c for c in known if c in features])
    time_column, time_parts = args.time_column, args.time_parts
    if time_column is None and time_parts is None:
        time_column, time_parts = guess_time_columns(header)
    spec = TableSpec(
        features=tuple(features),
        target=features[0],
        time_column=time_column,
        time_parts=tuple(time_parts) if time_parts else None,
        key_column=args.key_column,
        categorical=categorical,
        categories={c: known[c] for c in categorical if c in known},
    )
    series = _measured(read_table(args.csv, spec), spec)
    if args.key_column is None:  # one series, keyed by the file name
        series = [(args.csv.name.split(".")[0], ts, values) for _, ts, values in series]
    return Feed.merge(series, spec.features)


def synthetic_feed(keys: int, features: Sequence[str], interval_ms: int, seed: int) -> Feed:
    """A daily sinusoid plus noise per key and feature, a random phase per key.

    One pass is one day (shorter if that would be over 2 million readings); the same seed
    gives the same data.
    """
    rng = np.random.default_rng(seed)
    steps = max(2, min(math.ceil(DAY_MS / interval_ms), 2_000_000 // keys))
    ts = SYNTHETIC_START_MS + interval_ms * np.arange(steps, dtype=np.int64)
    angle = 2 * np.pi * (ts - SYNTHETIC_START_MS)[:, None] / DAY_MS + np.arange(len(features))
    level = 10.0 * np.arange(1, len(features) + 1)
    series = []
    for k, phase in enumerate(rng.uniform(0, 2 * np.pi, size=keys)):
        noise = rng.normal(0.0, 0.05 * level, size=(steps, len(features)))
        values = np.round(level + 0.5 * level * np.sin(angle + phase) + noise, 3)
        series.append((f"synthetic-{k:03d}", ts, values))
    return Feed.merge(series, features)


def _measured(table: Table, spec: TableSpec) -> list[_Series]:
    """Each series' arrays, with the target null again where it was missing (not filled)."""
    out = []
    for s in table.series:
        values = s.features.copy()
        if spec.target in spec.features:
            values[~s.target_observed, spec.features.index(spec.target)] = np.nan
        out.append((s.key, s.ts, values))
    return out


def _bundle(
    path: Path | None, settings: Settings, features: Sequence[str] | None
) -> ModelBundle | None:
    """--model's bundle (must load), else SF_MODEL__PATH's if it loads and features match."""
    from stream_forecaster.model.bundle import BundleError, ModelBundle

    if path is not None:
        return ModelBundle.load(path)
    try:
        bundle = ModelBundle.load(settings.model.path)
    except BundleError:
        return None
    if features is not None and set(bundle.manifest.features) != set(features):
        return None
    log.info("features and categories from model bundle %s", bundle.version)
    return bundle


# -- records and pacing --------------------------------------------------------------------


def is_malformed(index: int, ratio: float) -> bool:
    """Whether record ``index`` is replaced: exactly ``floor(n * ratio)`` of the first n are."""
    return math.floor((index + 1) * ratio) > math.floor(index * ratio)


def malformed_record(
    i: int, key: str = "sensor-1", ts_ms: int = 0, values: dict[str, float | None] | None = None
) -> tuple[bytes | None, bytes, str]:
    """The i-th malformed record: (record key, value, kind), kinds in rotation.

    Args:
        i: which one; ``i % len(MALFORMED_KINDS)`` picks the kind.
        key, ts_ms, values: the reading it replaces, so that it is wrong in one way only.
    """
    kind = list(MALFORMED_KINDS)[i % len(MALFORMED_KINDS)]
    values = dict(values or {"value": 1.0})
    first = next(iter(values))
    good: dict[str, Any] = {"ts": ts_ms, "values": values}
    documents: dict[str, object] = {
        "json_array": [ts_ms, list(values.values())],
        "missing_ts": {"values": values},
        "bad_ts_string": {"ts": "yesterday at noon", "values": values},
        "values_not_object": {"ts": ts_ms, "values": list(values.values())},
        "string_value": {**good, "values": {**values, first: "12.5"}},
        "unknown_field": {**good, "sensor_model": "rev-2"},
        "no_key": good,
        "oversized": {**good, "key": key + " " * DEFAULT_MAX_RECORD_BYTES},
        "wrong_feature_names": {**good, "values": {f"{f}_v2": v for f, v in values.items()}},
        "missing_feature": {**good, "values": dict(list(values.items())[:-1])},
        "missing_values": {"ts": ts_ms},
    }
    if kind == "not_json":
        value = b'{"ts": %d, "values": {' % ts_ms
    elif kind == "not_utf8":
        value = b'{"ts": %d, "values": {"\xff\xfe": 1.0}}' % ts_ms
    elif kind == "nan_literal":
        value = json.dumps({**good, "values": {**values, first: math.nan}}).encode()
    else:
        value = json.dumps(documents[kind], separators=(",", ":")).encode()
    return (None if kind == "no_key" else key.encode()), value, kind


class Pacer:
    """Sleeps until each record is due, due times counted from the start on a monotonic clock.

    Records due within ``burst_s`` go out without sleeping (high rates: small bursts). When
    more than ``max_lag_s`` behind (the broker stalled), the schedule restarts from now
    rather than catching up in a flood.

    Args:
        rate: records per second in total; ``None`` to pace by ``speedup``, data seconds
            per wall second.
        clock, sleep: monotonic seconds and sleeping, injectable for tests.
    """

    def __init__(
        self,
        rate: float | None = None,
        speedup: float = 1.0,
        *,
        burst_s: float = 0.005,
        max_lag_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.rate, self.speedup, self.burst_s, self.max_lag_s = rate, speedup, burst_s, max_lag_s
        self._clock, self._sleep = clock, sleep
        self._start: float | None = None
        self._first_ms = 0

    def due(self, index: int, data_ms: int) -> float:
        """When record ``index``, of data time ``data_ms``, is due; the first one starts."""
        if self._start is None:
            self._start, self._first_ms = self._clock(), data_ms
        if self.rate is not None:
            return self._start + index / self.rate
        return self._start + (data_ms - self._first_ms) / 1000 / self.speedup

    def wait(self, index: int, data_ms: int) -> float:
        """Sleep until the record is due (when worth it); returns the seconds slept."""
        due, now = self.due(index, data_ms), self._clock()
        if due - now > self.burst_s:
            self._sleep(due - now)
            return due - now
        if now - due > self.max_lag_s and self._start is not None:
            self._start += now - due
        return 0.0


# -- the command ---------------------------------------------------------------------------


class _Counts:
    """What was sent; send failures are counted on the producer's thread."""

    def __init__(self, total: int | None) -> None:
        self.total, self.good, self.bad, self.errors = total, 0, 0, 0
        self.data_ts: int | None = None
        self._lock = threading.Lock()

    def failed(self, exc: BaseException) -> None:
        with self._lock:
            self.errors += 1
            first = self.errors == 1
        if first:
            log.error("send failed (further failures are only counted): %r", exc)

    def report(self, rate: float) -> str:
        sent = self.good + self.bad
        done = f", {100 * sent / self.total:.1f}% done" if self.total else ""
        reached = "-" if self.data_ts is None else format_timestamp(self.data_ts)
        return (
            f"sent {sent} records ({self.good} readings, {self.bad} malformed), "
            f"{self.errors} send errors, {rate:.1f}/s, data time {reached}{done}"
        )


def run_command(args: argparse.Namespace, settings: Settings) -> int:
    """Replay the feed into the input topic; 1 when sends failed, else 0 (also after
    Ctrl-C or SIGTERM, which stop, flush and report)."""
    from kafka.errors import KafkaError

    feed = load_feed(args, settings)
    topic = args.topic or settings.topics.input
    counts = _Counts(args.limit if args.loop else min(args.limit or len(feed), len(feed)))
    producer = _producer(settings)
    pacer = Pacer(None if args.speedup else args.rate or 50.0, args.speedup or 1.0)
    shift = timestamp_shift(feed, args.timestamps, time.time_ns() // 1_000_000)
    stream = itertools.islice(readings(feed, shift_ms=shift, loop=args.loop), counts.total)
    log.info(
        "replaying %s to topic %s: keys %s, features %s",
        args.source,
        topic,
        ",".join(feed.keys[:5]) + (",..." if len(feed.keys) > 5 else ""),
        ",".join(feed.features),
    )
    previous = _on_sigterm(_interrupt)
    start = last_time = time.monotonic()
    last_sent = 0
    try:
        for index, (key, ts, values) in enumerate(stream):
            pacer.wait(index, ts)
            if is_malformed(index, args.bad_ratio):
                record_key, value, _ = malformed_record(counts.bad, key, ts, values)
                counts.bad += 1
            else:
                record_key, value = encode_reading(key, ts, values)
                counts.good += 1
            try:
                producer.send(topic, key=record_key, value=value).add_errback(counts.failed)
            except KafkaError as exc:  # e.g. the buffer stayed full for max_block_ms
                counts.failed(exc)
            counts.data_ts, now = ts, time.monotonic()
            if now - last_time >= PROGRESS_EVERY_S:
                log.info(counts.report((index + 1 - last_sent) / (now - last_time)))
                last_time, last_sent = now, index + 1
    except KeyboardInterrupt:
        log.info("interrupted: flushing what was sent")
    finally:
        _on_sigterm(previous)
        try:
            producer.flush(timeout=max(10.0, settings.kafka.request_timeout_ms / 1000))
        except KafkaError as exc:
            log.error("flush did not complete, records may be lost: %r", exc)
        producer.close(timeout=10)
    elapsed = time.monotonic() - start
    summary = counts.report((counts.good + counts.bad) / max(elapsed, 1e-9))
    log.info(summary)
    print(f"simulate: {summary}; to topic {topic} in {elapsed:.1f} s")
    return 1 if counts.errors else 0


def _producer(settings: Settings) -> Any:
    from kafka import KafkaProducer
    from kafka.errors import KafkaError

    try:
        return KafkaProducer(**settings.kafka.client_config(), acks="all", linger_ms=5, retries=5)
    except KafkaError as exc:
        raise ConfigError(
            f"cannot connect to Kafka at {settings.kafka.bootstrap_servers}: {exc!r}"
        ) from None


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _on_sigterm(handler: Any) -> Any:
    """Install a SIGTERM handler (main thread only); returns the previous one."""
    if handler is None or threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, handler)


# -- the parser ----------------------------------------------------------------------------

_DESCRIPTION = """\
Send sensor readings to the input topic (SF_TOPICS__INPUT) as a live feed: real data
replayed from CSV files, or synthetic series. Readings go out in time order, interleaved
across keys. Each reading's ts is the data's own time, by default shifted so that the
first reading is now (keeping the data's regular spacing); the Kafka record timestamp is
the wall clock at send, which the forecaster's end-to-end latency is measured from.
Progress is logged every 5 s.
"""
_EPILOG = """\
examples:
  stream-forecaster simulate                          # Beijing as 4 stations, 50 readings/s
  stream-forecaster simulate --speedup 3600 --loop    # an hour of data per second, forever
  stream-forecaster simulate --source energy --rate 200 --bad-ratio 0.01
  stream-forecaster simulate --source csv --csv plant.csv --key-column sensor --features t,rh
  stream-forecaster simulate --source synthetic --keys 100 --interval-ms 1000 --rate 1000

Exit status: 0 when every record was delivered (also after Ctrl-C or SIGTERM, which stop
cleanly and flush), 1 when sends failed, 2 for bad options, settings or data.
"""


def add_parser(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    """Register the ``simulate`` subcommand, handled by :func:`run_command`."""
    p = sub.add_parser(
        "simulate",
        parents=[common],
        help="replay real (or synthetic) sensor data into the input topic as a live feed",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    count = checked(int, "a whole number >= 1", lambda v: v >= 1)
    positive = positive_float
    data = p.add_argument_group("the data").add_argument
    data(
        "--source",
        choices=["beijing", "energy", "csv", "synthetic"],
        default="beijing",
        help="beijing (default): hourly PM2.5 and weather, as --keys stations; energy: a "
        "house's 9 rooms every 10 min (features T, RH, T_out, RH_out, Press_mm_hg, "
        "Windspeed); csv: any CSV (--csv); synthetic: daily sinusoids plus noise",
    )
    data(
        "--csv",
        type=Path,
        metavar="FILE",
        help="CSV file to replay (required for --source csv; beijing and energy default "
        "to the sample files shipped with the package)",
    )
    data(
        "--keys",
        type=count,
        metavar="N",
        help="number of series keys: beijing stations (default 4), energy rooms (default "
        "and at most 9), synthetic keys (default 4)",
    )
    data(
        "--shift-hours",
        type=checked(int, "a whole number >= 0", lambda v: v >= 0),
        metavar="H",
        help="beijing: station k sends the values of k*H rows (hours) later, wrapping "
        "around, at the same times as station 0 (default 168, a week)",
    )
    data(
        "--model",
        type=Path,
        metavar="BUNDLE",
        help="model bundle (file or folder) whose features and category codes to follow "
        "(default: the bundle at SF_MODEL__PATH, if there is one whose features fit)",
    )
    data(
        "--features",
        type=csv_list,
        metavar="A,B,C",
        help="csv: feature columns (default: SF_MODEL__FEATURES, else the bundle's); "
        "synthetic: feature names (default value,aux)",
    )
    data(
        "--key-column",
        metavar="COLUMN",
        help="csv: column naming each row's series key (default: one series, keyed by "
        "the file name)",
    )
    data(
        "--time-column",
        metavar="COLUMN",
        help="csv: column of epoch milliseconds or date-times, naive = UTC (default: the "
        "first of ts, timestamp, time, date, datetime)",
    )
    data(
        "--time-parts",
        type=csv_list,
        metavar="COLS",
        help="csv: columns that make up the time, e.g. year,month,day,hour (default "
        "when no time column is found and these four exist)",
    )
    data(
        "--categorical",
        type=csv_list,
        metavar="A,B",
        help="csv: text columns sent as category codes, in the bundle's order, else "
        "sorted (default: the bundle's categorical features)",
    )
    data(
        "--interval-ms",
        type=count,
        metavar="MS",
        help="synthetic: milliseconds between a key's readings (default 60000)",
    )
    data("--seed", type=int, help="synthetic: random seed, same seed same data (default 0)")
    timing = p.add_argument_group("timing")
    timing.add_argument(
        "--timestamps",
        choices=["shifted", "original"],
        default="shifted",
        help="shifted (default): the data's times moved so that the first reading is "
        "now; original: the data's own times",
    )
    pace = timing.add_mutually_exclusive_group()
    pace.add_argument(
        "--rate",
        type=positive,
        metavar="R",
        help="readings per second, all keys together (default 50)",
    )
    pace.add_argument(
        "--speedup",
        type=positive,
        metavar="X",
        help="pace by data time instead: data seconds per wall second (3600: an hour per second)",
    )
    timing.add_argument(
        "--limit",
        type=count,
        metavar="N",
        help="stop after N records (default: the whole data once; with --loop, never)",
    )
    timing.add_argument(
        "--loop",
        action="store_true",
        help="replay the data again and again; times keep advancing by the data's span, "
        "never repeating",
    )
    records = p.add_argument_group("the records")
    records.add_argument(
        "--bad-ratio",
        type=checked(float, "a share in [0, 1]", lambda v: 0 <= v <= 1),
        default=0.0,
        metavar="P",
        help="replace this share of records, spread evenly, by malformed ones (14 kinds "
        "in rotation) to exercise the dead-letter path (default 0)",
    )
    records.add_argument("--topic", help="topic to send to (default: SF_TOPICS__INPUT)")
    p.set_defaults(handler=run_command)
