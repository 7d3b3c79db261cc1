"""Where a feed comes from: the Beijing PM2.5 data as several stations (each the series
shifted by a week), the house's nine rooms, any CSV, or synthetic daily sinusoids."""

from __future__ import annotations

import argparse
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Final

import numpy as np

from stream_forecaster.data.samples import (
    BEIJING_CSV,
    BEIJING_FEATURES,
    ENERGY_CSV,
    ENERGY_FEATURES,
)
from stream_forecaster.data.series import Table
from stream_forecaster.data.tables import TableSpec, guess_time_columns, read_header, read_table
from stream_forecaster.settings import ConfigError, Settings
from stream_forecaster.simulate.feed import Feed, Series

if TYPE_CHECKING:
    from stream_forecaster.model.bundle import ModelBundle

log = logging.getLogger(__name__)


SYNTHETIC_START_MS: Final = 1_704_067_200_000  # 2024-01-01T00:00:00Z: synthetic data time


DAY_MS: Final = 86_400_000


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


def _measured(table: Table, spec: TableSpec) -> list[Series]:
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
