"""Why an input record cannot be used: :class:`InvalidRecord` and its reasons.

The reason is one short, stable label: the dead-letter header ``sf.reason`` and the label of
``sf_records_invalid_total``.
"""

from __future__ import annotations

from typing import Final

#: Every reason a record can be rejected for, with its meaning.
INVALID_REASONS: Final[dict[str, str]] = {
    "oversized": "the value is larger than the configured maximum",
    "not_utf8": "the value or the key is not valid UTF-8",
    "not_json": "the value is not JSON",
    "not_object": "the value is JSON but not an object",
    "unknown_field": "the object has a field other than ts, values and key",
    "missing_ts": "the object has no ts",
    "future_ts": "ts is further ahead of the wall clock than SF_WINDOWS__MAX_FUTURE_MS",
    "bad_ts": "ts is neither epoch milliseconds nor an RFC 3339 time with an offset",
    "missing_values": "the object has no values object",
    "bad_values": "values is not an object of feature name to number or null",
    "non_finite": "a value is NaN or infinite",
    "out_of_range": "a value is a number too large for a float (an integer of hundreds of digits)",
    "no_key": "neither the record key nor the key field gives a series key",
    "bad_key": "the key field is not Unicode text (it holds a lone surrogate)",
    "unknown_feature": "values names a feature the model does not know",
    "missing_feature": "values lacks a feature the model needs",
}


class InvalidRecord(ValueError):
    """A record that cannot be used; ``reason`` is one of :data:`INVALID_REASONS`."""

    def __init__(self, reason: str, detail: str) -> None:
        if reason not in INVALID_REASONS:
            raise ValueError(f"unknown invalid-record reason {reason!r}")
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
