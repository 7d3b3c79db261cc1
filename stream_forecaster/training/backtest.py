"""Walk-forward backtest of a model bundle on historical data.

Every sample of the evaluated tail is a one-step-ahead forecast made from the actual
readings up to that step (no peeking, no refitting), compared with the baselines of
:mod:`~stream_forecaster.training.baselines` (persistence, seasonal naive, ridge) on the
same samples, pooled and per key.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from stream_forecaster.data.series import Table, make_windows
from stream_forecaster.data.tables import DataError
from stream_forecaster.model.bundle import ModelBundle
from stream_forecaster.model.calendar import with_calendar
from stream_forecaster.training.baselines import Comparison, compare
from stream_forecaster.training.fit import predict, score
from stream_forecaster.wire.timestamps import format_timestamp

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BacktestResult:
    """Errors of the model and of the baselines on the same samples."""

    target: str
    samples: int
    from_ts: int
    to_ts: int
    mae: float
    rmse: float
    persistence_mae: float
    persistence_rmse: float
    target_ts: npt.NDArray[np.int64]
    series_index: npt.NDArray[np.int64]
    actual: npt.NDArray[np.float64]
    forecast: npt.NDArray[np.float64]
    comparison: Comparison

    @property
    def skill(self) -> float:
        """1 - MAE_model / MAE_persistence: above 0 means better than persistence."""
        return 1.0 - self.mae / self.persistence_mae if self.persistence_mae else float("nan")

    def table(self) -> str:
        """The result as a small text table."""
        return "\n".join(
            [
                f"backtest of {self.target}: {self.samples} one-step forecasts, "
                f"{format_timestamp(self.from_ts)} .. {format_timestamp(self.to_ts)}",
                *self.comparison.lines(),
            ]
        )


def run_backtest(
    bundle: ModelBundle, table: Table, tail: float | None = None, from_ts: int | None = None
) -> BacktestResult:
    """Forecast every sample of the held-out tail and score it beside the baselines.

    Args:
        bundle: the model.
        table: the data, read with the bundle's features and categories.
        tail: share of the newest samples to evaluate. ``None`` evaluates exactly the samples
            the bundle held out in training (falls back to 0.2 if it recorded none).
        from_ts: evaluate the samples whose target time is at or after this (epoch ms)
            instead; it wins over ``tail``.

    Raises:
        DataError: no samples to evaluate.
    """
    manifest = bundle.manifest
    series = [with_calendar(s, manifest.calendar) for s in table.series]
    windows = make_windows(series, manifest.window)
    if len(windows) == 0:
        raise DataError("no complete windows in the data: it is shorter than the model's window")
    recorded = manifest.training.holdout_from_ts
    holdout_from = recorded if from_ts is None else from_ts
    if from_ts is not None:
        tail = None
        if recorded is not None and from_ts < recorded:
            log.warning(
                "the evaluated part starts at %s, before the model's held-out data (%s): "
                "part of it was seen in training",
                format_timestamp(from_ts),
                format_timestamp(recorded),
            )
    if tail is None and holdout_from is None:
        tail = 0.2
    if tail is not None:
        if not 0 < tail <= 1:
            raise DataError(f"expected --tail between 0 and 1, got {tail}")
        times = np.sort(windows.target_ts)
        tail_from = int(times[min(len(times) - 1, int(len(times) * (1 - tail)))])
        if holdout_from is not None and tail_from < holdout_from:
            log.warning(
                "the evaluated tail starts at %s, before the model's held-out data (%s): "
                "part of it was seen in training",
                format_timestamp(tail_from),
                format_timestamp(holdout_from),
            )
        holdout_from = tail_from
    assert holdout_from is not None
    evaluated = windows.select(windows.target_ts >= holdout_from)
    if len(evaluated) == 0:
        where = "--from" if from_ts is not None else "the model's held-out start"
        raise DataError(
            f"no samples at or after {format_timestamp(holdout_from)} ({where}); the data "
            f"ends at {format_timestamp(int(windows.target_ts.max()))}; pass --from or --tail "
            "to choose the evaluated part"
        )
    forecast = predict(bundle.build_model(), manifest.scaling, evaluated)
    errors = score(forecast, evaluated)
    before = windows.select(windows.target_ts < holdout_from)
    return BacktestResult(
        target=manifest.target,
        samples=len(evaluated),
        from_ts=int(evaluated.target_ts.min()),
        to_ts=int(evaluated.target_ts.max()),
        mae=errors.mae,
        rmse=errors.rmse,
        persistence_mae=errors.persistence_mae,
        persistence_rmse=errors.persistence_rmse,
        target_ts=evaluated.target_ts,
        series_index=evaluated.series_index,
        actual=evaluated.targets,
        forecast=forecast,
        comparison=compare(forecast, evaluated, before, table.series),
    )


def plot_backtest(result: BacktestResult, table: Table, out: Path, zoom: int = 336) -> Path:
    """Write a PNG: actual against forecast over the tail, and a zoom on its last steps.

    Args:
        result: the backtest.
        table: the data it ran on (for series names).
        out: the PNG file to write.
        zoom: number of final steps shown in the lower panel.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    first = int(result.series_index[0])
    mask = result.series_index == first
    times = result.target_ts[mask].astype("datetime64[ms]")
    actual, forecast = result.actual[mask], result.forecast[mask]
    key = table.series[first].key

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(12, 7), constrained_layout=True)
    for ax, sl in ((top, slice(None)), (bottom, slice(-zoom, None))):
        ax.plot(times[sl], actual[sl], color="#444444", linewidth=0.8, label="actual")
        ax.plot(times[sl], forecast[sl], color="#d62728", linewidth=0.8, label="forecast")
        ax.set_ylabel(result.target)
        locator = ax.xaxis.get_major_locator()
        ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))  # type: ignore[no-untyped-call]
        ax.grid(alpha=0.3)
        ax.legend(loc="upper right")
    series = f", series {key}" if key else ""
    top.set_title(
        f"One-step-ahead {result.target}{series}: model MAE {result.mae:.2f} vs "
        f"persistence {result.persistence_mae:.2f} ({result.samples} forecasts)"
    )
    bottom.set_title(f"last {min(zoom, len(times))} steps")
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
