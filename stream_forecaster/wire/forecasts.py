"""Forecasts: the output topic's records.

Record key = series key (UTF-8); value = compact JSON, see :class:`Forecast`.
"""

from __future__ import annotations

import orjson
from pydantic import BaseModel, ConfigDict


class Forecast(BaseModel):
    """A one-step-ahead forecast of one series, as published to the output topic.

    Args:
        key: series key.
        ts: the time the forecast is for (epoch ms): newest reading's time + sampling interval.
        target: the feature being forecast.
        forecast: the forecast value, in the target's own units.
        lower: lower bound of the prediction interval, when one is computed.
        upper: upper bound of the prediction interval, when one is computed.
        model_version: version id of the model bundle that produced it.
        window_end_ts: time of the newest reading in the input window (epoch ms).
    """

    model_config = ConfigDict(frozen=True, allow_inf_nan=False)

    key: str
    ts: int
    target: str
    forecast: float
    lower: float | None = None
    upper: float | None = None
    model_version: str
    window_end_ts: int

    def to_json_bytes(self) -> bytes:
        """The record value: compact UTF-8 JSON."""
        return self.model_dump_json().encode("utf-8")


def encode_forecast(
    *,
    key: str,
    ts: int,
    target: str,
    forecast: float,
    lower: float | None,
    upper: float | None,
    model_version: str,
    window_end_ts: int,
) -> bytes:
    """``Forecast(...).to_json_bytes()``, byte for byte, without building the model (the
    hot path; the values must be finite)."""
    return orjson.dumps(
        {
            "key": key,
            "ts": ts,
            "target": target,
            "forecast": forecast,
            "lower": lower,
            "upper": upper,
            "model_version": model_version,
            "window_end_ts": window_end_ts,
        }
    )
