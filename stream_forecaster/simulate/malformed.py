"""Malformed records, to exercise the dead-letter path: each wrong in one way only, kinds
in rotation, each with the reason serve rejects it for (every reason has one)."""

from __future__ import annotations

import json
import math
from typing import Any, Final

from stream_forecaster.wire.readings import DEFAULT_MAX_RECORD_BYTES

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
    "huge_integer": "out_of_range",
    "surrogate_key": "bad_key",
    "far_future": "future_ts",
}


_CENTURY_MS: Final = 100 * 365 * 24 * 3600 * 1000


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
        "huge_integer": {**good, "values": {**values, first: 10**400}},
        "surrogate_key": {**good, "key": key + "\ud800"},
        "far_future": {**good, "ts": ts_ms + _CENTURY_MS},
    }
    if kind == "not_json":
        value = b'{"ts": %d, "values": {' % ts_ms
    elif kind == "not_utf8":
        value = b'{"ts": %d, "values": {"\xff\xfe": 1.0}}' % ts_ms
    elif kind == "nan_literal":
        value = json.dumps({**good, "values": {**values, first: math.nan}}).encode()
    else:
        value = json.dumps(documents[kind], separators=(",", ":")).encode()
    record_key = None if kind in ("no_key", "surrogate_key") else key.encode()
    return record_key, value, kind
