"""Offline training of the seed LSTM on historical series.

The newest ``holdout`` share of the samples (by target time) is never trained on: it is
kept for the backtest. Of the rest, the newest ``validation`` share drives early stopping.
One model is trained on all series together; windows never cross series.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from stream_forecaster.data.series import Table, Windows, make_windows
from stream_forecaster.data.tables import DataError, TableSpec
from stream_forecaster.model.bundle import ModelBundle, TrainingInfo, utc_now_iso
from stream_forecaster.model.calendar import CALENDAR_INPUTS, CalendarInput, with_calendar
from stream_forecaster.model.network import build_model, import_keras
from stream_forecaster.model.scaling import Scaling, TargetMode, TargetTransform

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainOptions:
    """Training knobs.

    Args:
        window: readings per input window.
        epochs: maximum number of epochs.
        batch_size: samples per gradient step.
        learning_rate: Adam's learning rate.
        patience: epochs without a better validation loss before stopping.
        validation: share of the training period (its newest part) used for validation.
        holdout: share of all samples (the newest) kept out of training for the backtest.
        target_mode: the model forecasts the next ``"delta"`` of the target or its ``"level"``.
        seed: random seed (weights, dropout, shuffling).
        damping: with ``"delta"``, shrink the forecast change toward persistence by the
            factor (0.05 to 1) that minimises the validation MAE (the retraining worker
            uses it: short trainings on little data often add more noise than signal to
            the change).
        log_skewed: take ``log1p`` of heavy-tailed non-negative inputs (see
            :class:`~stream_forecaster.model.scaling.Scaling`).
        target_transform: ``"asinh"``: learn ``asinh(change / s)`` instead of the change.
        calendar: calendar inputs after the features (see
            :mod:`~stream_forecaster.model.calendar`); the windows must carry them.
    """

    window: int = 24
    epochs: int = 50
    batch_size: int = 64
    learning_rate: float = 1e-3
    patience: int = 5
    validation: float = 0.1
    holdout: float = 0.2
    target_mode: TargetMode = "delta"
    seed: int = 42
    damping: bool = False
    log_skewed: bool = False
    target_transform: TargetTransform = "none"
    calendar: tuple[CalendarInput, ...] = ()

    def __post_init__(self) -> None:
        checks = {
            "window": self.window >= 2,
            "epochs": self.epochs >= 1,
            "batch_size": self.batch_size >= 1,
            "learning_rate": self.learning_rate > 0,
            "patience": self.patience >= 1,
            "validation": 0 < self.validation < 1,
            "holdout": 0 <= self.holdout < 1,
            "calendar": set(self.calendar) <= set(CALENDAR_INPUTS)
            and len(set(self.calendar)) == len(self.calendar),
        }
        for name, ok in checks.items():
            if not ok:
                raise ValueError(f"invalid training option {name}={getattr(self, name)!r}")


@dataclass(frozen=True)
class Split:
    """Training, validation and held-out samples, split by time."""

    train: Windows
    validation: Windows
    holdout: Windows
    holdout_from_ts: int | None


def split_by_time(windows: Windows, validation: float, holdout: float) -> Split:
    """Split samples by target time: oldest for training, then validation, newest held out.

    Raises:
        DataError: too few samples for the split.
    """
    if len(windows) < 10:
        raise DataError(
            f"expected at least 10 complete windows to train on, got {len(windows)}: "
            "the data is shorter than the window or has too many gaps"
        )
    times = np.sort(windows.target_ts)
    holdout_from: int | None = None
    in_holdout = np.zeros(len(windows), dtype=bool)
    if holdout > 0:
        holdout_from = int(times[int(len(times) * (1 - holdout))])
        in_holdout = windows.target_ts >= holdout_from
    rest = np.sort(windows.target_ts[~in_holdout])
    validation_from = int(rest[int(len(rest) * (1 - validation))])
    in_validation = ~in_holdout & (windows.target_ts >= validation_from)
    in_train = ~in_holdout & ~in_validation
    if in_train.sum() < 1 or in_validation.sum() < 1:
        raise DataError(f"too few samples ({len(windows)}) to split off validation data")
    return Split(
        train=windows.select(in_train),
        validation=windows.select(in_validation),
        holdout=windows.select(in_holdout),
        holdout_from_ts=holdout_from,
    )


class _EpochProgress:
    """A Keras callback that logs one line per epoch (works without a terminal)."""

    def __init__(self, epochs: int, report: Callable[[str], None]) -> None:
        self.epochs = epochs
        self.report = report
        self.started = 0.0

    def make(self) -> Any:
        keras = import_keras()
        progress = self

        base: Any = keras.callbacks.Callback

        class Callback(base):  # type: ignore[misc]
            def on_epoch_begin(self, epoch: int, logs: dict[str, float] | None = None) -> None:
                progress.started = time.monotonic()

            def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
                logs = logs or {}
                shown = " ".join(f"{k}={v:.4f}" for k, v in sorted(logs.items()))
                elapsed = time.monotonic() - progress.started
                progress.report(f"epoch {epoch + 1}/{progress.epochs} {shown} ({elapsed:.1f}s)")

        return Callback()


def train(
    table: Table,
    spec: TableSpec,
    options: TrainOptions,
    *,
    source: str,
    name: str = "default",
    report: Callable[[str], None] = log.info,
    print_summary: Callable[[str], None] | None = None,
) -> ModelBundle:
    """Train the seed LSTM on a table's series and bundle it.

    Args:
        table: the series, from :func:`stream_forecaster.data.tables.read_table`.
        spec: how the table was read (recorded in the bundle).
        options: training knobs.
        source: where the data came from, recorded in the bundle.
        name: the model name, recorded in the bundle.
        report: receives one progress line per epoch and a final summary.
        print_summary: receives the Keras model summary, line by line.

    Raises:
        DataError: too little usable data.
    """
    series = [with_calendar(s, options.calendar) for s in table.series]
    windows = make_windows(series, options.window)
    split = split_by_time(windows, options.validation, options.holdout)
    report(
        f"samples: {len(split.train)} train, {len(split.validation)} validation, "
        f"{len(split.holdout)} held out for the backtest"
    )
    all_ts = np.concatenate([s.ts for s in table.series])
    return fit(
        split,
        features=spec.features,
        target=spec.target,
        options=options,
        source=source,
        table=spec.describe(),
        series=len(table.series),
        data_span=(int(all_ts.min()), int(all_ts.max())),
        categories=table.categories,
        name=name,
        report=report,
        print_summary=print_summary,
    )


def fit(
    split: Split,
    *,
    features: tuple[str, ...] | list[str],
    target: str,
    options: TrainOptions,
    source: str,
    initial: ModelBundle | None = None,
    table: dict[str, object] | None = None,
    series: int = 0,
    data_span: tuple[int, int] | None = None,
    categories: dict[str, tuple[str, ...]] | None = None,
    name: str = "default",
    report: Callable[[str], None] = log.info,
    print_summary: Callable[[str], None] | None = None,
) -> ModelBundle:
    """Train on ``split.train`` (early stopping on ``split.validation``) and bundle it.

    Args:
        split: the samples; ``split.holdout`` is never touched.
        features: feature names in model order.
        target: the forecast feature.
        options: training knobs (``window`` must match the samples).
        source: where the data came from, recorded in the bundle.
        initial: warm start: continue from this bundle's weights and keep its scaling
            (a retrain); ``None`` trains from scratch and fits the scaling.
        table: how the data was read, recorded in the bundle.
        series: number of series, recorded.
        data_span: first and last reading time, recorded.
        categories: categorical encodings, recorded.
        name: the model name.
        report: receives one progress line per epoch and a final summary.
        print_summary: receives the Keras model summary, line by line.
    """
    keras = import_keras()
    keras.utils.set_random_seed(options.seed)
    n_inputs = len(features) + 2 * len(options.calendar)
    if initial is None:
        scaling = Scaling.fit(
            split.train.inputs[:, -1, :],
            split.train.targets,
            split.train.last_targets,
            options.target_mode,
            log_skewed=options.log_skewed,
            target_transform=options.target_transform,
        )
        model = build_model(options.window, n_inputs, learning_rate=options.learning_rate)
    else:
        scaling = initial.manifest.scaling.guarded_by(split.train.targets, split.train.last_targets)
        model = build_model(options.window, n_inputs, learning_rate=options.learning_rate)
        model.set_weights(list(initial.weights))

    def xy(w: Windows) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        x = scaling.scale_inputs(w.inputs)
        y = scaling.scale_targets(w.targets, w.last_targets).astype(np.float32)
        return x, y

    x_train, y_train = xy(split.train)
    x_val, y_val = xy(split.validation)
    if print_summary is not None:
        model.summary(print_fn=lambda line, *args, **kwargs: print_summary(line))
    stopper = keras.callbacks.EarlyStopping(
        monitor="val_loss", patience=options.patience, restore_best_weights=True
    )
    started = time.monotonic()
    history = model.fit(
        x_train,
        y_train,
        validation_data=(x_val, y_val),
        epochs=options.epochs,
        batch_size=options.batch_size,
        shuffle=True,
        callbacks=[stopper, _EpochProgress(options.epochs, report).make()],
        verbose=0,
    )
    epochs_run = len(history.history["loss"])
    if options.damping and options.target_mode == "delta":
        scaling = _damped(model, scaling, split.validation, report)
    metrics = _validation_metrics(model, scaling, split.validation)
    report(
        f"trained {epochs_run} epochs in {time.monotonic() - started:.0f}s; validation "
        f"MAE {metrics['val_mae']:.4f} (persistence {metrics['val_persistence_mae']:.4f})"
    )
    info = TrainingInfo(
        created_at=utc_now_iso(),
        source=source,
        table=table or {},
        series=series,
        data_start_ts=data_span[0] if data_span else None,
        data_end_ts=data_span[1] if data_span else None,
        holdout_from_ts=split.holdout_from_ts,
        samples={
            "train": len(split.train),
            "validation": len(split.validation),
            "holdout": len(split.holdout),
        },
        epochs=epochs_run,
        metrics=metrics,
        options=asdict(options),
    )
    return ModelBundle.from_weights(
        tuple(model.get_weights()),
        features=features,
        target=target,
        window=options.window,
        scaling=scaling,
        training=info,
        categories=categories,
        name=name,
        calendar=options.calendar,
    )


def predict(model: Any, scaling: Scaling, windows: Windows) -> npt.NDArray[np.float64]:
    """Forecasts in target units for raw windows (batched; for offline use)."""
    if len(windows) == 0:
        return np.empty(0)
    outputs = model.predict(scaling.scale_inputs(windows.inputs), batch_size=2048, verbose=0)
    return np.asarray(scaling.forecast(outputs[:, 0], windows.last_targets), dtype=np.float64)


@dataclass(frozen=True)
class Errors:
    """MAE and RMSE of forecasts, and of persistence (the window's last value), on the same
    samples."""

    mae: float
    rmse: float
    persistence_mae: float
    persistence_rmse: float


def score(forecast: npt.NDArray[np.float64], windows: Windows) -> Errors:
    """The errors of ``forecast`` against the targets of ``windows``, and persistence's."""
    error = forecast - windows.targets
    persistence = windows.last_targets - windows.targets
    return Errors(
        mae=float(np.abs(error).mean()),
        rmse=float(np.sqrt((error**2).mean())),
        persistence_mae=float(np.abs(persistence).mean()),
        persistence_rmse=float(np.sqrt((persistence**2).mean())),
    )


def _validation_metrics(model: Any, scaling: Scaling, validation: Windows) -> dict[str, float]:
    errors = score(predict(model, scaling, validation), validation)
    return {
        "val_mae": errors.mae,
        "val_rmse": errors.rmse,
        "val_persistence_mae": errors.persistence_mae,
    }


def _damped(
    model: Any, scaling: Scaling, validation: Windows, report: Callable[[str], None]
) -> Scaling:
    """``scaling`` with the forecast change multiplied by the factor that minimises the
    validation MAE (1 keeps it as trained)."""
    outputs = model.predict(scaling.scale_inputs(validation.inputs), batch_size=2048, verbose=0)
    change = scaling.change(outputs[:, 0])
    factors = np.linspace(0.05, 1.0, 20)
    mae = [
        float(np.abs(validation.last_targets + f * change - validation.targets).mean())
        for f in factors
    ]
    best = float(factors[int(np.argmin(mae))])
    if best < 1.0:
        report(f"damping the forecast change by {best:.2f} (validation MAE {min(mae):.4f})")
    return scaling.model_copy(update={"damping": best})
