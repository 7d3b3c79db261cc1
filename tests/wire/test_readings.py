"""Wire formats: what a sensor sends, what a forecast looks like, and every rejection."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stream_forecaster.wire.errors import INVALID_REASONS, InvalidRecord
from stream_forecaster.wire.forecasts import Forecast, encode_forecast
from stream_forecaster.wire.readings import Reading, check_features, decode_reading, encode_reading
from stream_forecaster.wire.timestamps import format_timestamp, parse_timestamp


def test_decodes_epoch_milliseconds_and_record_key() -> None:
    r = decode_reading(b"sensor-3", b'{"ts": 1700000000000, "values": {"t": 1.5, "rh": null}}')
    assert r == Reading(key="sensor-3", ts=1_700_000_000_000, values={"t": 1.5, "rh": None})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2023-11-14T22:13:20Z", 1_700_000_000_000),
        ("2023-11-14T22:13:20.250Z", 1_700_000_000_250),
        ("2023-11-15T00:13:20+02:00", 1_700_000_000_000),
    ],
)
def test_decodes_rfc3339_times(text: str, expected: int) -> None:
    assert parse_timestamp(text) == expected


def test_key_field_stands_in_for_a_missing_record_key() -> None:
    r = decode_reading(None, b'{"key": "room-1", "ts": 5, "values": {"t": 1}}')
    assert r.key == "room-1"
    assert r.values == {"t": 1.0}


def test_record_key_wins_over_the_key_field() -> None:
    assert decode_reading(b"k", b'{"key": "other", "ts": 5, "values": {}}').key == "k"


MALFORMED = [
    (b"x" * 70_000, "oversized"),
    (b"\xff\xfe", "not_utf8"),
    (b"{not json", "not_json"),
    (b"[1, 2]", "not_object"),
    (b'{"ts": 1, "values": {}, "extra": 1}', "unknown_field"),
    (b'{"values": {"t": 1}}', "missing_ts"),
    (b'{"ts": "yesterday", "values": {}}', "bad_ts"),
    (b'{"ts": "2023-11-14T22:13:20", "values": {}}', "bad_ts"),
    (b'{"ts": true, "values": {}}', "bad_ts"),
    (b'{"ts": -5, "values": {}}', "bad_ts"),
    (b'{"ts": 1}', "missing_values"),
    (b'{"ts": 1, "values": [1]}', "bad_values"),
    (b'{"ts": 1, "values": {"t": "hot"}}', "bad_values"),
    (b'{"ts": 1, "values": {"t": true}}', "bad_values"),
    (b'{"ts": 1, "values": {"t": NaN}}', "non_finite"),
    (b'{"ts": 1, "values": {"t": 1e999}}', "non_finite"),
    (b'{"ts": 1, "values": {"t": 1%s}}' % (b"0" * 400), "out_of_range"),
    (b'{"ts": 1, "values": {"t": 1%s}}' % (b"0" * 5000), "out_of_range"),  # past int parsing
    (b'{"ts": 1%s, "values": {}}' % (b"0" * 5000), "out_of_range"),
    (b'{"ts": "0001-01-01T00:00:00+01:00", "values": {}}', "bad_ts"),  # before year 1 in UTC
    (b'{"ts": 1e300, "values": {}}', "bad_ts"),
    (b'{"ts": 1, "values": {' + b"[" * 5000, "not_json"),
]


@pytest.mark.parametrize(("value", "reason"), MALFORMED)
def test_malformed_records_are_rejected_with_a_reason(value: bytes, reason: str) -> None:
    with pytest.raises(InvalidRecord) as info:
        decode_reading(b"k", value)
    assert info.value.reason == reason
    assert reason in INVALID_REASONS


def test_no_key_anywhere() -> None:
    with pytest.raises(InvalidRecord) as info:
        decode_reading(None, b'{"ts": 1, "values": {}}')
    assert info.value.reason == "no_key"


def test_a_key_field_that_is_not_unicode_text() -> None:
    with pytest.raises(InvalidRecord) as info:
        decode_reading(None, b'{"ts": 1, "values": {}, "key": "sensor-\\ud800"}')
    assert info.value.reason == "bad_key"
    assert "sensor-\\ud800" in info.value.detail


def test_feature_check_names_record_and_counts() -> None:
    reading = Reading(key="sensor-3", ts=1, values={"a": 1.0, "b": None})
    check_features(reading, ["a", "b"])
    with pytest.raises(
        InvalidRecord, match=r"expected 3 features, got 2 in record sensor-3@offset 1042"
    ):
        check_features(reading, ["a", "b", "c"], where="sensor-3@offset 1042")
    with pytest.raises(InvalidRecord) as info:
        check_features(reading, ["a"])
    assert info.value.reason == "unknown_feature"


@given(
    key=st.text(min_size=1, max_size=20),
    ts=st.integers(0, 4_000_000_000_000),
    values=st.dictionaries(
        st.text(min_size=1, max_size=8),
        st.none() | st.floats(allow_nan=False, allow_infinity=False),
        max_size=8,
    ),
)
def test_encode_then_decode_round_trips(key: str, ts: int, values: dict[str, float | None]) -> None:
    record_key, record_value = encode_reading(key, ts, values)
    assert decode_reading(record_key, record_value) == Reading(key=key, ts=ts, values=values)


def test_forecast_json_has_the_documented_fields() -> None:
    f = Forecast(
        key="k",
        ts=3_600_000,
        target="pm2.5",
        forecast=12.5,
        model_version="v1",
        window_end_ts=0,
    )
    data = json.loads(f.to_json_bytes())
    assert data == {
        "key": "k",
        "ts": 3_600_000,
        "target": "pm2.5",
        "forecast": 12.5,
        "lower": None,
        "upper": None,
        "model_version": "v1",
        "window_end_ts": 0,
    }
    assert Forecast.model_validate_json(f.to_json_bytes()) == f


finite = st.floats(allow_nan=False, allow_infinity=False)


@given(
    key=st.text(min_size=1, max_size=20),
    ts=st.integers(0, 4_000_000_000_000),
    forecast=finite,
    bounds=st.none() | st.tuples(finite, finite),
)
def test_the_hot_path_forecast_encoding_equals_the_model(
    key: str, ts: int, forecast: float, bounds: tuple[float, float] | None
) -> None:
    lower, upper = bounds or (None, None)
    fields: dict[str, Any] = {
        "key": key,
        "ts": ts,
        "target": "pm2.5",
        "forecast": forecast,
        "lower": lower,
        "upper": upper,
        "model_version": "20260101T000000Z-0123abcd",
        "window_end_ts": ts - 60_000,
    }
    assert encode_forecast(**fields) == Forecast(**fields).to_json_bytes()


def test_forecast_refuses_non_finite_values() -> None:
    with pytest.raises(ValueError, match="finite"):
        Forecast(
            key="k", ts=1, target="t", forecast=float("nan"), model_version="v", window_end_ts=0
        )


def test_format_timestamp() -> None:
    assert format_timestamp(1_700_000_000_000) == "2023-11-14T22:13:20Z"
    assert format_timestamp(1_700_000_000_047) == "2023-11-14T22:13:20.047Z"
