"""Sensor readings: the input topic's records, decoded and validated.

Reading (input topic): record key = series key (UTF-8); value = JSON::

    {"ts": 1700000000000, "values": {"pm2.5": 129.0, "TEMP": -4.0, "cbwd": null}}

``ts`` is epoch milliseconds (integer) or an RFC 3339 string with an offset
(``"2023-11-14T22:13:20Z"``). A ``"key"`` field stands in for a missing record key.

Forecasts (the output topic) are in :mod:`stream_forecaster.wire.forecasts`.

Decoding never raises anything but :class:`InvalidRecord`, whose ``reason`` is one short,
stable label (used for the dead-letter headers and the per-reason metric).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any, Final

import orjson
from pydantic import BaseModel, ConfigDict, Field

from stream_forecaster.wire.errors import InvalidRecord
from stream_forecaster.wire.timestamps import parse_timestamp

#: Largest accepted record value, in bytes; bigger records are rejected as ``oversized``.
DEFAULT_MAX_RECORD_BYTES: Final = 64 * 1024


class Reading(BaseModel):
    """One decoded sensor reading of one series.

    Args:
        key: series key.
        ts: time of the reading, epoch milliseconds (UTC).
        values: feature name -> value; ``None`` means "not measured this time".
    """

    model_config = ConfigDict(frozen=True)

    key: str = Field(min_length=1)
    ts: int
    values: dict[str, float | None]


def decode_reading(
    record_key: bytes | None,
    value: bytes | None,
    *,
    max_bytes: int = DEFAULT_MAX_RECORD_BYTES,
) -> Reading:
    """Decode and validate the raw bytes of one input record.

    Args:
        record_key: the Kafka record key (the series key), or ``None``.
        value: the Kafka record value.
        max_bytes: the largest value accepted.

    Raises:
        InvalidRecord: the record cannot be used; ``reason`` says why.
    """
    key, ts, values = decode_reading_fields(record_key, value, max_bytes=max_bytes)
    # Validated field by field: no second validation by the model.
    return Reading.model_construct(key=key, ts=ts, values=values)


def decode_reading_fields(
    record_key: bytes | None,
    value: bytes | None,
    *,
    max_bytes: int = DEFAULT_MAX_RECORD_BYTES,
) -> tuple[str, int, dict[str, float | None]]:
    """:func:`decode_reading` as ``(key, ts, values)``, without building the model (the
    hot path).

    Raises:
        InvalidRecord: the record cannot be used; ``reason`` says why.
    """
    if value is None:
        raise InvalidRecord("not_json", "expected a JSON object, got an empty (null) value")
    if len(value) > max_bytes:
        raise InvalidRecord("oversized", f"expected at most {max_bytes} bytes, got {len(value)}")
    try:
        # orjson: faster than the standard library's json, and strict (UTF-8, no NaN).
        data: Any = orjson.loads(value)
    except orjson.JSONDecodeError:
        data = _load_json_slowly(value)  # the precise reason for the dead-letter record
    if not isinstance(data, dict):
        raise InvalidRecord("not_object", f"expected a JSON object, got {type(data).__name__}")
    if len(data) > 2 or "ts" not in data or "values" not in data:
        unknown = sorted(set(data) - {"ts", "values", "key"})
        if unknown:
            raise InvalidRecord(
                "unknown_field", f"expected fields ts, values, key; got also {unknown}"
            )
        if "ts" not in data:
            raise InvalidRecord("missing_ts", "expected a ts field")
        if "values" not in data:
            raise InvalidRecord("missing_values", "expected a values object")
    ts = parse_timestamp(data["ts"])
    values = _check_values(data["values"])
    return _series_key(record_key, data.get("key")), ts, values


def _load_json_slowly(value: bytes) -> Any:
    """The standard library's parse of a value orjson refused, for its precise reason (or
    the value, for what orjson refuses and JSON allows, such as 1e999)."""
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidRecord(
            "not_utf8", f"value is not UTF-8 ({exc.reason} at byte {exc.start})"
        ) from None
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except _NonFiniteError as exc:
        raise InvalidRecord("non_finite", f"expected finite numbers, got {exc}") from None
    except (json.JSONDecodeError, RecursionError) as exc:
        raise InvalidRecord("not_json", f"expected JSON, got {_preview(text)} ({exc})") from None
    except ValueError:  # an integer of more digits than Python converts (4,300 by default)
        raise InvalidRecord(
            "out_of_range", f"expected numbers within the float range, got {_preview(text)}"
        ) from None


class _NonFiniteError(ValueError):
    pass


def _reject_constant(name: str) -> Any:
    raise _NonFiniteError(name)


def _check_values(raw: object) -> dict[str, float | None]:
    if not isinstance(raw, dict):
        raise InvalidRecord("bad_values", f"expected an object, got {type(raw).__name__}")
    values: dict[str, float | None] = {}
    for name, value in raw.items():
        if type(value) is float and value - value == 0.0:  # finite: the common case
            values[name] = value
        elif value is None:
            values[name] = None
        elif isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InvalidRecord(
                "bad_values", f"expected a number or null for {name!r}, got {value!r}"
            )
        else:
            try:
                number = float(value)
            except OverflowError:  # an integer of hundreds of digits
                raise InvalidRecord(
                    "out_of_range",
                    f"expected a number within the float range for {name!r}, got an integer "
                    "too large for one",
                ) from None
            if not math.isfinite(number):  # e.g. 1e999 overflows to inf
                raise InvalidRecord("non_finite", f"expected a finite number for {name!r}")
            values[name] = number
    return values


def _series_key(record_key: bytes | None, field: object) -> str:
    if record_key:
        try:
            return record_key.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidRecord("not_utf8", "record key is not UTF-8") from None
    if isinstance(field, str) and field:
        try:
            field.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate (JSON lets "\ud800" through)
            raise InvalidRecord(
                "bad_key", f"expected a key of Unicode text, got {_preview(field)}"
            ) from None
        return field
    if field is not None:
        raise InvalidRecord(
            "no_key", f"expected the key field to be a non-empty string, got {field!r}"
        )
    raise InvalidRecord("no_key", "expected a record key or a key field")


def _preview(text: str, limit: int = 40) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")


def check_features(
    reading: Reading | dict[str, float | None],
    features: Sequence[str],
    *,
    where: str = "",
) -> None:
    """Check that a reading carries exactly the model's features (values may be null).

    Args:
        reading: the decoded reading, or its values.
        features: the model's feature names.
        where: where the record came from, for the message (``"sensor-3@offset 1042"``).

    Raises:
        InvalidRecord: with reason ``unknown_feature`` or ``missing_feature``.
    """
    values = reading if isinstance(reading, dict) else reading.values
    if values.keys() == set(features):
        return
    suffix = f" in record {where}" if where else ""
    unknown = sorted(set(values) - set(features))
    if unknown:
        raise InvalidRecord(
            "unknown_feature",
            f"expected only features {list(features)}, got also {unknown}{suffix}",
        )
    missing = [f for f in features if f not in values]
    if missing:
        raise InvalidRecord(
            "missing_feature",
            f"expected {len(features)} features, got {len(values)}{suffix}: missing {missing}",
        )


def encode_reading(key: str, ts_ms: int, values: dict[str, float | None]) -> tuple[bytes, bytes]:
    """The (record key, record value) of a reading, as a sensor feed should send it."""
    payload: dict[str, Any] = {"ts": ts_ms, "values": values}
    return key.encode("utf-8"), json.dumps(payload, separators=(",", ":"), allow_nan=False).encode()
