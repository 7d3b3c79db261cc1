"""Reading sensor history from CSV files into series (:mod:`stream_forecaster.data.series`).

A CSV holds one series, or several told apart by a key column. Each row is one reading:
a time (one column of epoch milliseconds or date-time strings, or several columns such as
year, month, day, hour), the features, and the target. Missing values (empty, ``NA``,
``NaN``, ``null``) are filled forward within a series; a sample whose target was missing
is never trained or scored on. Windows never cross series, nor gaps in time.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Final, Literal

import numpy as np
import numpy.typing as npt

from stream_forecaster.data.series import Series, Table, forward_fill

log = logging.getLogger(__name__)

MISSING_TOKENS: Final = frozenset({"", "na", "nan", "null", "none", "n/a", "#n/a"})
#: Time columns recognised when none is named, in this order.
TIME_COLUMN_GUESSES: Final = ("ts", "timestamp", "time", "date", "datetime")
TIME_PART_GUESS: Final = ("year", "month", "day", "hour")

MissingPolicy = Literal["ffill", "drop"]


class DataError(ValueError):
    """The data cannot be used as configured; the message names the column and line."""


@dataclass(frozen=True)
class TableSpec:
    """How to read a CSV into series.

    Args:
        features: feature columns, in model order.
        target: the column to forecast one step ahead (often also a feature).
        time_column: a column of epoch milliseconds or date-time strings (UTC when naive).
        time_parts: columns that together make the time, among year, month, day, hour,
            minute, second (e.g. ``("year", "month", "day", "hour")``).
        key_column: the column that names each row's series; ``None`` for one series.
        categorical: feature columns holding categories (text); encoded as category codes.
        categories: fixed category lists (from a trained bundle); new ones are learned when
            absent.
        missing: ``"ffill"`` fills missing values forward within a series; ``"drop"`` drops
            rows with any missing feature (windows then do not cross the holes).
    """

    features: tuple[str, ...]
    target: str
    time_column: str | None = None
    time_parts: tuple[str, ...] | None = None
    key_column: str | None = None
    categorical: tuple[str, ...] = ()
    categories: Mapping[str, Sequence[str]] = field(default_factory=dict)
    missing: MissingPolicy = "ffill"

    def describe(self) -> dict[str, object]:
        """The reading options, as recorded in a bundle's training metadata."""
        return {
            "time_column": self.time_column,
            "time_parts": list(self.time_parts) if self.time_parts else None,
            "key_column": self.key_column,
            "categorical": list(self.categorical),
            "missing": self.missing,
        }


def guess_time_columns(header: Sequence[str]) -> tuple[str | None, tuple[str, ...] | None]:
    """A time column, or time-part columns, recognised by name in a CSV header."""
    lowered = {h.lower(): h for h in header}
    for guess in TIME_COLUMN_GUESSES:
        if guess in lowered:
            return lowered[guess], None
    if all(p in lowered for p in TIME_PART_GUESS):
        return None, tuple(lowered[p] for p in TIME_PART_GUESS)
    return None, None


def read_header(path: Path) -> list[str]:
    """The column names of a CSV file."""
    with _open_csv(path) as handle:
        return next(csv.reader(handle), [])


def read_table(path: Path, spec: TableSpec) -> Table:
    """Read a CSV file into series, one per key, each sorted by time.

    Args:
        path: the CSV file (may be ``.gz``, ``.xz`` or ``.bz2`` compressed).
        spec: which columns mean what.

    Raises:
        DataError: a configured column is missing, a numeric column holds text, a time
            cannot be parsed, or a category is unknown; the message names column and line.
    """
    with _open_csv(path) as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None:
            raise DataError(f"{path} is empty: expected a header line")
        columns = _column_indexes(path, header, spec)
        rows = [row for row in reader if any(cell.strip() for cell in row)]  # no blank lines
    if not rows:
        raise DataError(f"{path} has a header but no rows")

    n = len(rows)
    ts = _read_times(path, rows, columns, spec)
    keys = [row[columns[spec.key_column]] for row in rows] if spec.key_column else [""] * n
    value_columns = list(dict.fromkeys([*spec.features, spec.target]))
    categories: dict[str, tuple[str, ...]] = {}
    values = np.empty((n, len(value_columns)), dtype=np.float64)
    for j, name in enumerate(value_columns):
        raw = [row[columns[name]] if columns[name] < len(row) else "" for row in rows]
        if name in spec.categorical:
            values[:, j], categories[name] = _encode_categories(path, name, raw, spec.categories)
        else:
            values[:, j] = _parse_numbers(path, name, raw, spec.categorical)

    feature_idx = [value_columns.index(f) for f in spec.features]
    target_idx = value_columns.index(spec.target)
    series = []
    for key in dict.fromkeys(keys):
        idx = np.flatnonzero(np.asarray(keys) == key) if spec.key_column else np.arange(n)
        series.append(
            _build_series(
                key,
                ts=ts[idx],
                values=values[idx],
                feature_idx=feature_idx,
                target_idx=target_idx,
                spec=spec,
            )
        )
    log.info(
        "read %d rows of %s: %d series, %d features, target %s",
        n,
        path,
        len(series),
        len(spec.features),
        spec.target,
    )
    return Table(series=series, categories=categories, rows=n)


# -- helpers -------------------------------------------------------------------------------


def _open_csv(path: Path):  # type: ignore[no-untyped-def]
    try:
        if path.suffix == ".xz":
            import lzma

            return lzma.open(path, "rt", encoding="utf-8", newline="")
        if path.suffix == ".gz":
            import gzip

            return gzip.open(path, "rt", encoding="utf-8", newline="")
        if path.suffix == ".bz2":
            import bz2

            return bz2.open(path, "rt", encoding="utf-8", newline="")
        return path.open(encoding="utf-8", newline="")
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None


def _column_indexes(path: Path, header: list[str], spec: TableSpec) -> dict[str, int]:
    index = {name.strip(): i for i, name in enumerate(header)}
    wanted: list[tuple[str, str]] = [(f, "feature column") for f in spec.features]
    wanted.append((spec.target, "target column"))
    if spec.time_column:
        wanted.append((spec.time_column, "time column"))
    wanted += [(p, "time part column") for p in spec.time_parts or ()]
    if spec.key_column:
        wanted.append((spec.key_column, "key column"))
    for name, role in wanted:
        if name not in index:
            raise DataError(f"{path}: {role} {name!r} not found; the columns are {list(index)}")
    unknown_categorical = sorted(set(spec.categorical) - {*spec.features, spec.target})
    if unknown_categorical:
        raise DataError(f"--categorical names {unknown_categorical}, which are not features")
    return index


def _read_times(
    path: Path, rows: list[list[str]], columns: dict[str, int], spec: TableSpec
) -> npt.NDArray[np.int64]:
    if spec.time_parts:
        return _times_from_parts(path, rows, columns, spec.time_parts)
    if not spec.time_column:
        raise DataError(
            f"{path}: no time column: name one with --time-column, or the columns that make "
            "up the time with --time-parts year,month,day,hour"
        )
    col = columns[spec.time_column]
    out = np.empty(len(rows), dtype=np.int64)
    for i, row in enumerate(rows):
        out[i] = _parse_time(path, spec.time_column, row[col].strip(), i + 2)
    return out


def _parse_time(path: Path, column: str, text: str, line: int) -> int:
    if text.lstrip("-").isdigit():
        return int(text)
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise DataError(
            f"{path}, line {line}: time column {column!r} holds {text!r}; expected epoch "
            "milliseconds or a date-time such as 2016-01-11 17:00:00"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return round(parsed.timestamp() * 1000)


def _times_from_parts(
    path: Path, rows: list[list[str]], columns: dict[str, int], parts: tuple[str, ...]
) -> npt.NDArray[np.int64]:
    allowed = ("year", "month", "day", "hour", "minute", "second")
    names = [p.lower() for p in parts]
    bad = [p for p in names if p not in allowed]
    if bad or "year" not in names:
        raise DataError(
            f"--time-parts: expected columns among {allowed} including year, got {parts}"
        )
    out = np.empty(len(rows), dtype=np.int64)
    for i, row in enumerate(rows):
        fields = {"month": 1, "day": 1}
        for name, column in zip(names, parts, strict=True):
            text = row[columns[column]].strip()
            if not text.isdigit():
                raise DataError(
                    f"{path}, line {i + 2}: time part column {column!r} holds {text!r}; "
                    "expected a whole number"
                )
            fields[name] = int(text)
        try:
            stamp = datetime(**fields, tzinfo=UTC)
        except ValueError as exc:
            raise DataError(
                f"{path}, line {i + 2}: time parts {fields} are not a date: {exc}"
            ) from None
        out[i] = round(stamp.timestamp() * 1000)
    return out


def _parse_numbers(
    path: Path, column: str, raw: list[str], categorical: tuple[str, ...]
) -> npt.NDArray[np.float64]:
    out = np.empty(len(raw), dtype=np.float64)
    for i, text in enumerate(raw):
        stripped = text.strip()
        if stripped.lower() in MISSING_TOKENS:
            out[i] = np.nan
            continue
        try:
            out[i] = float(stripped)
        except ValueError:
            hint = (
                ""
                if column in categorical
                else f"; if it is a category, pass --categorical {column}"
            )
            raise DataError(
                f"{path}, line {i + 2}: column {column!r} holds {text!r}; expected a number{hint}"
            ) from None
        if not np.isfinite(out[i]):
            out[i] = np.nan
    return out


def _encode_categories(
    path: Path, column: str, raw: list[str], known: Mapping[str, Sequence[str]]
) -> tuple[npt.NDArray[np.float64], tuple[str, ...]]:
    cleaned = [t.strip() for t in raw]
    if column in known:
        categories = tuple(known[column])
    else:
        categories = tuple(sorted({t for t in cleaned if t.lower() not in MISSING_TOKENS}))
    code = {c: float(i) for i, c in enumerate(categories)}
    out = np.empty(len(cleaned), dtype=np.float64)
    for i, text in enumerate(cleaned):
        if text.lower() in MISSING_TOKENS:
            out[i] = np.nan
        elif text in code:
            out[i] = code[text]
        else:
            raise DataError(
                f"{path}, line {i + 2}: column {column!r} holds category {text!r}; the model "
                f"knows {list(categories)}"
            )
    return out, categories


def _build_series(
    key: str,
    *,
    ts: npt.NDArray[np.int64],
    values: npt.NDArray[np.float64],
    feature_idx: list[int],
    target_idx: int,
    spec: TableSpec,
) -> Series:
    order = np.argsort(ts, kind="stable")
    ts, values = ts[order], values[order]
    # Repeated timestamps: the last row wins, as a replayed reading would.
    last_of_each = np.append(ts[1:] != ts[:-1], True)
    if not last_of_each.all():
        log.warning("series %r: %d repeated timestamps, kept the last", key, (~last_of_each).sum())
        ts, values = ts[last_of_each], values[last_of_each]
    observed = ~np.isnan(values[:, target_idx])
    if spec.missing == "drop":
        complete = ~np.isnan(values[:, [*feature_idx, target_idx]]).any(axis=1)
        ts, values, observed = ts[complete], values[complete], observed[complete]
    else:
        values = forward_fill(values)
    return Series(
        key=key,
        ts=ts,
        features=np.ascontiguousarray(values[:, feature_idx]),
        target=values[:, target_idx].copy(),
        target_observed=observed,
    )
