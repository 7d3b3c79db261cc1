"""Reading CSVs and cutting windows: the rules that decide what a model learns from."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from stream_forecaster.data.samples import BEIJING_CSV, SAMPLES_DIR
from stream_forecaster.data.series import make_windows
from stream_forecaster.data.tables import DataError, TableSpec, guess_time_columns, read_table

HOUR = 3_600_000


def write_csv(path: Path, header: str, rows: list[str]) -> Path:
    path.write_text(header + "\n" + "\n".join(rows) + "\n")
    return path


@pytest.fixture
def two_keys(tmp_path: Path) -> Path:
    rows = [
        f"{k},{i * HOUR},{i + (100 if k == 'b' else 0)},{i * 2}" for k in "ab" for i in range(10)
    ]
    return write_csv(tmp_path / "two.csv", "key,ts,x,y", rows)


def spec(**kwargs: object) -> TableSpec:
    defaults: dict[str, object] = {"features": ("x", "y"), "target": "x", "time_column": "ts"}
    defaults.update(kwargs)
    return TableSpec(**defaults)  # type: ignore[arg-type]


def test_missing_configured_column_is_named(two_keys: Path) -> None:
    with pytest.raises(DataError, match=r"feature column 'z' not found; the columns are \['key'"):
        read_table(two_keys, spec(features=("x", "z")))
    with pytest.raises(DataError, match="key column 'station' not found"):
        read_table(two_keys, spec(key_column="station"))
    with pytest.raises(DataError, match="time column 'when' not found"):
        read_table(two_keys, spec(time_column="when"))


def test_blank_lines_are_skipped(tmp_path: Path) -> None:
    path = tmp_path / "blank.csv"
    path.write_text("ts,x,y\n0,1,2\n\n1,2,3\n\n")
    assert read_table(path, spec()).rows == 2


def test_text_in_numeric_column_names_column_and_line(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "t.csv", "ts,x,y", ["0,1,2", "1,1,2", "2,warm,2"])
    with pytest.raises(
        DataError, match=r"line 4: column 'x' holds 'warm'; expected a number; if it"
    ):
        read_table(path, spec())


def test_categorical_column_is_encoded_and_unknown_category_named(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "c.csv", "ts,x,wind", ["0,1,NW", "1,2,SE", "2,3,NW", "3,4,cv"])
    table = read_table(path, spec(features=("x", "wind"), categorical=("wind",)))
    assert table.categories == {"wind": ("NW", "SE", "cv")}
    np.testing.assert_array_equal(table.series[0].features[:, 1], [0, 1, 0, 2])

    fixed = spec(features=("x", "wind"), categorical=("wind",), categories={"wind": ("NW", "SE")})
    with pytest.raises(DataError, match=r"line 5: column 'wind' holds category 'cv'"):
        read_table(path, fixed)


def test_series_are_split_by_key_and_sorted_by_time(tmp_path: Path) -> None:
    rows = ["b,2,20,0", "a,1,1,0", "b,1,10,0", "a,0,0,0"]
    table = read_table(write_csv(tmp_path / "k.csv", "key,ts,x,y", rows), spec(key_column="key"))
    assert [s.key for s in table.series] == ["b", "a"]
    np.testing.assert_array_equal(table.series[0].ts, [1, 2])
    np.testing.assert_array_equal(table.series[0].target, [10, 20])


def test_windows_never_cross_keys(two_keys: Path) -> None:
    table = read_table(two_keys, spec(key_column="key"))
    windows = make_windows(table.series, window=3)

    assert len(windows) == 2 * (10 - 3)
    for inputs, target, series in zip(
        windows.inputs, windows.targets, windows.series_index, strict=True
    ):
        offset = 100 if table.series[series].key == "b" else 0
        assert ((inputs[:, 0] >= offset) & (inputs[:, 0] < offset + 10)).all()
        assert target == inputs[-1, 0] + 1  # the next reading of the same key


def test_window_shapes_and_alignment(two_keys: Path) -> None:
    table = read_table(two_keys, spec(key_column="key"))
    w = make_windows(table.series[:1], window=4)
    assert w.inputs.shape == (6, 4, 2)
    np.testing.assert_array_equal(w.inputs[0, :, 0], [0, 1, 2, 3])
    assert w.targets[0] == 4
    assert w.last_targets[0] == 3
    assert w.target_ts[0] == 4 * HOUR


def test_missing_values_fill_forward_and_unobserved_targets_are_not_samples(
    tmp_path: Path,
) -> None:
    rows = [f"{i * HOUR},{'NA' if i in (0, 5) else i},{i}" for i in range(8)]
    table = read_table(write_csv(tmp_path / "m.csv", "ts,x,y", rows), spec())
    s = table.series[0]
    assert np.isnan(s.features[0, 0])  # nothing before it to fill from
    assert s.features[5, 0] == 4  # filled forward
    assert not s.target_observed[5]

    w = make_windows(table.series, window=2)
    assert 5 * HOUR not in w.target_ts  # its target was not measured
    assert HOUR not in w.target_ts  # its window holds the unfillable leading NA
    assert 6 * HOUR in w.target_ts  # a filled value may be an input


def test_windows_do_not_cross_time_gaps(tmp_path: Path) -> None:
    times = [0, 1, 2, 3, 10, 11, 12, 13]
    rows = [f"{t * HOUR},{t},0" for t in times]
    table = read_table(write_csv(tmp_path / "g.csv", "ts,x,y", rows), spec())
    w = make_windows(table.series, window=2)
    np.testing.assert_array_equal(w.target_ts // HOUR, [2, 3, 12, 13])


def test_time_parts_and_date_strings(tmp_path: Path) -> None:
    parts = write_csv(tmp_path / "p.csv", "year,month,day,hour,x", ["2010,1,1,0,1", "2010,1,1,1,2"])
    table = read_table(
        parts, spec(features=("x",), time_column=None, time_parts=("year", "month", "day", "hour"))
    )
    np.testing.assert_array_equal(table.series[0].ts, [1262304000000, 1262307600000])

    dates = write_csv(
        tmp_path / "d.csv", "date,x", ['"2016-01-11 17:00:00",1', "2016-01-11T17:10:00Z,2"]
    )
    table = read_table(dates, spec(features=("x",), time_column="date"))
    assert np.diff(table.series[0].ts).tolist() == [600_000]


def test_unparseable_time_is_named(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "bad.csv", "date,x", ["2016-01-11 17:00:00,1", "soon,2"])
    with pytest.raises(DataError, match=r"line 3: time column 'date' holds 'soon'"):
        read_table(path, spec(features=("x",), time_column="date"))


def test_guess_time_columns() -> None:
    assert guess_time_columns(["No", "year", "month", "day", "hour", "pm2.5"]) == (
        None,
        ("year", "month", "day", "hour"),
    )
    assert guess_time_columns(["date", "T1"]) == ("date", None)
    assert guess_time_columns(["a", "b"]) == (None, None)


def test_reads_the_real_beijing_file() -> None:
    path = BEIJING_CSV
    features = ("pm2.5", "DEWP", "TEMP", "PRES", "cbwd", "Iws", "Is", "Ir")
    table = read_table(
        path,
        TableSpec(
            features=features,
            target="pm2.5",
            time_parts=("year", "month", "day", "hour"),
            categorical=("cbwd",),
        ),
    )
    s = table.series[0]
    assert table.rows == 43_824
    assert table.categories == {"cbwd": ("NE", "NW", "SE", "cv")}
    assert int((~s.target_observed).sum()) == 2_067  # the documented NA count
    assert set(np.diff(s.ts).tolist()) == {3_600_000}


def test_bundled_data_matches_its_provenance_note() -> None:
    import hashlib
    import re

    folder = SAMPLES_DIR
    note = (folder / "README.md").read_text()
    recorded = dict(re.findall(r"## (\S+)\n(?:.*\n)*?- sha256 ([0-9a-f]{64})", note))
    assert set(recorded) == {"beijing_pm25_hourly.csv", "energy_appliances_10min.csv.xz"}
    for name, digest in recorded.items():
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == digest
