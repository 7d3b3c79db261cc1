"""From the windows a batch made ready to forecast records: one inference call, the
prediction intervals, each forecast held for scoring, and the records to publish."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from stream_forecaster.scoring.online import OnlineScorer
from stream_forecaster.serving.batch import BatchReport
from stream_forecaster.serving.engine import InferenceEngine
from stream_forecaster.settings import ScoringSettings
from stream_forecaster.wire.forecasts import encode_forecast
from stream_forecaster.wire.records import OutputRecord

log = logging.getLogger(__name__)

Bounds = tuple[npt.NDArray[np.float64] | None, npt.NDArray[np.float64] | None]


@dataclass
class ReadyWindows:
    """The windows to forecast from, one entry per forecast (the persistence forecasts,
    checked and indexed as an array, stay one).

    Args:
        keys: the series key of each.
        window_end_ts: the time of each window's newest reading.
        forecast_ts: the time each forecast is for.
        source_timestamp_ms: the Kafka timestamp of the reading that made it ready.
        persistence: each window's last target value.
        windows: the raw windows, shape ``(n, window, n_features)``.
    """

    keys: list[str]
    window_end_ts: list[int]
    forecast_ts: list[int]
    source_timestamp_ms: list[int]
    persistence: npt.NDArray[np.float64]
    windows: npt.NDArray[np.float32]


class Forecaster:
    """Forecasts for ready windows, with intervals, held by the scorer until their actual.

    Args:
        scoring: the interval method, coverage and Monte-Carlo samples.
        scorer: holds each forecast until its actual arrives; gives conformal intervals.
        topic: the output topic.
    """

    def __init__(self, scoring: ScoringSettings, scorer: OnlineScorer, topic: str) -> None:
        self.scoring = scoring
        self.scorer = scorer
        self.topic = topic

    def forecast(
        self,
        engine: InferenceEngine,
        ready: ReadyWindows,
        actuals: dict[tuple[str, int], float],
        report: BatchReport,
    ) -> list[OutputRecord]:
        """The forecast records of ``ready``, in its order; a forecast that is not finite is
        not published (counted in ``report`` and logged)."""
        started = time.perf_counter()
        values, report.clipped = engine.guarded_forecast(ready.windows)
        report.inference_seconds = time.perf_counter() - started
        report.windows = len(ready.keys)
        lower, upper = self._intervals(engine, ready.windows, values, ready.keys)
        finite = np.isfinite(values)
        for i in np.flatnonzero(~finite).tolist():
            report.non_finite += 1
            log.warning(
                "model %s gave a non-finite forecast for %s@%d; not published",
                engine.version,
                ready.keys[i],
                ready.window_end_ts[i],
            )
        self._hold(engine, ready, values, finite=finite, bounds=(lower, upper), actuals=actuals)
        target = engine.bundle.manifest.target
        lows, highs = _optional(lower, len(values)), _optional(upper, len(values))
        return [
            OutputRecord(
                topic=self.topic,
                key=ready.keys[i].encode(),
                value=encode_forecast(
                    key=ready.keys[i],
                    ts=ready.forecast_ts[i],
                    target=target,
                    forecast=value,
                    lower=low,
                    upper=high,
                    model_version=engine.version,
                    window_end_ts=ready.window_end_ts[i],
                ),
                source_timestamp_ms=ready.source_timestamp_ms[i],
            )
            for i, (value, low, high, ok) in enumerate(
                zip(values.tolist(), lows, highs, finite.tolist(), strict=True)
            )
            if ok
        ]

    def _hold(
        self,
        engine: InferenceEngine,
        ready: ReadyWindows,
        values: npt.NDArray[np.float64],
        *,
        finite: npt.NDArray[np.bool_],
        bounds: Bounds,
        actuals: dict[tuple[str, int], float],
    ) -> None:
        """Hold the forecasts for scoring; those whose actual came later in this batch
        (catching up) are scored at once."""
        scored = np.flatnonzero(finite & np.isfinite(ready.persistence))
        which = scored.tolist()
        lower, upper = bounds
        self.scorer.expect_many(
            [ready.keys[i] for i in which],
            [ready.forecast_ts[i] for i in which],
            values[scored],
            ready.persistence[scored],
            engine.version,
            lower=None if lower is None else lower[scored],
            upper=None if upper is None else upper[scored],
            actuals=actuals,
        )

    def _intervals(
        self,
        engine: InferenceEngine,
        windows: npt.NDArray[np.float32],
        values: npt.NDArray[np.float64],
        keys: list[str],
    ) -> Bounds:
        """Prediction interval bounds at the configured coverage (None while the conformal
        calibration has too few errors); NaN where a bound is not finite (no interval)."""
        s = self.scoring
        if s.interval_method == "mc_dropout":
            samples = engine.dropout_samples(windows, s.mc_samples)
            tail = (1 - s.coverage) / 2
            low, high = np.quantile(samples, [tail, 1 - tail], axis=1)
            lower, upper = np.minimum(low, values), np.maximum(high, values)
        else:
            bounds = self.scorer.intervals(values, keys)
            if bounds is None:
                return None, None
            lower, upper = bounds
            floor = engine.bundle.manifest.scaling.target_floor
            if floor is not None:  # no band below what the target can be
                lower = np.maximum(lower, floor)
        bounded = np.isfinite(lower) & np.isfinite(upper)
        return np.where(bounded, lower, np.nan), np.where(bounded, upper, np.nan)


def _optional(values: npt.NDArray[np.float64] | None, n: int) -> list[float | None]:
    """``values`` as a list with None for NaN; ``n`` Nones when there are none."""
    if values is None:
        return [None] * n
    return [None if math.isnan(v) else v for v in values.tolist()]
