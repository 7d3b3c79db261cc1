"""Reading times: epoch milliseconds in, RFC 3339 out."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Final

from stream_forecaster.wire.errors import InvalidRecord

# Epoch milliseconds from 1970 to 9999, the range datetime can render.
_MIN_TS_MS: Final = 0
_MAX_TS_MS: Final = 253_402_300_799_999


def parse_timestamp(raw: object) -> int:
    """Epoch milliseconds from an integer or an RFC 3339 string with an offset.

    Raises:
        InvalidRecord: with reason ``bad_ts``.
    """
    if isinstance(raw, bool):
        raise InvalidRecord("bad_ts", f"expected epoch milliseconds or RFC 3339, got {raw!r}")
    if isinstance(raw, int):
        ts = raw
    elif isinstance(raw, float) and raw.is_integer():
        ts = int(raw)
    elif isinstance(raw, str):
        try:
            parsed = datetime.fromisoformat(raw)
        except ValueError:
            raise InvalidRecord(
                "bad_ts", f"expected an RFC 3339 time such as 2024-01-31T12:00:00Z, got {raw!r}"
            ) from None
        if parsed.tzinfo is None:
            raise InvalidRecord(
                "bad_ts", f"expected a time with an offset (Z or +hh:mm), got {raw!r}"
            )
        try:
            ts = round(parsed.astimezone(UTC).timestamp() * 1000)
        except OverflowError:  # the offset takes it past year 1 or 9999
            raise InvalidRecord(
                "bad_ts", f"expected a time between the years 1 and 9999 in UTC, got {raw!r}"
            ) from None
    else:
        raise InvalidRecord("bad_ts", f"expected epoch milliseconds or RFC 3339, got {raw!r}")
    if not _MIN_TS_MS <= ts <= _MAX_TS_MS:
        raise InvalidRecord(
            "bad_ts", f"expected epoch milliseconds between 0 and year 9999, got {ts}"
        )
    return ts


def check_not_ahead(ts: int, latest_ts: float, max_ahead_ms: int | None, where: str) -> None:
    """Refuse a reading stamped after ``latest_ts`` (the wall clock plus ``max_ahead_ms``).

    Raises:
        InvalidRecord: ``future_ts``, naming the record (``where``) and both times.
    """
    if ts > latest_ts:
        raise InvalidRecord(
            "future_ts",
            f"expected a time at most {max_ahead_ms} ms ahead of the wall clock (before "
            f"{format_timestamp(int(latest_ts))}), got {format_timestamp(ts)} in record {where}",
        )


def format_timestamp(ts_ms: int) -> str:
    """RFC 3339 UTC rendering of epoch milliseconds, for logs and plots."""
    moment = datetime.fromtimestamp(ts_ms / 1000, tz=UTC)
    spec = "milliseconds" if ts_ms % 1000 else "seconds"
    return moment.isoformat(timespec=spec).replace("+00:00", "Z")
