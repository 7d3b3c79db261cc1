"""``stream-forecaster retrain``: the worker that keeps the model fresh.

Top to bottom: readings in (its own consumer group on the input topic) -> a bounded
history per key -> when a trigger fires (enough history for a first model, the schedule,
or drift) -> train a candidate, warm-started from the current model -> the promotion
gate on the newest held-out windows (never trained on) -> promoted: registry folder and
model topic, signed when a secret is set; rejected: registry entry with the reason.

Drift is judged without reading the forecasts back: ``serve``'s forecast for a window is
the current model applied to that window, so the worker scores the current model on the
windows that arrived after its training data, which are exactly what ``serve`` forecast.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Literal

from kafka import KafkaConsumer
from kafka.errors import KafkaError

from stream_forecaster.data.series import Windows, make_windows
from stream_forecaster.data.tables import DataError
from stream_forecaster.kafka.availability import wait_for_cluster
from stream_forecaster.kafka.clients import client_config
from stream_forecaster.model.bundle import BundleError, ModelBundle
from stream_forecaster.model.calendar import with_calendar
from stream_forecaster.model.handoff import add_judged, trusted_current
from stream_forecaster.model.registry import Registry
from stream_forecaster.model.signing import SignatureError, Signer, Verifier, warn_if_off
from stream_forecaster.monitoring.http import HttpEndpoints
from stream_forecaster.monitoring.retrain_metrics import RetrainMetrics
from stream_forecaster.retraining.gate import Verdict, gate
from stream_forecaster.retraining.history import History
from stream_forecaster.settings import ConfigError, Settings
from stream_forecaster.training.fit import Errors, Split, TrainOptions, fit, predict, score
from stream_forecaster.training.fit import split_by_time as split_windows
from stream_forecaster.wire.errors import InvalidRecord
from stream_forecaster.wire.readings import decode_reading

log = logging.getLogger(__name__)

Trigger = Literal["first", "schedule", "drift"]
_CHECK_EVERY_S = 5.0
_VALIDATION_SHARE = 0.15
_LIVE_WINDOWS_MAX = 5000


class RetrainWorker:
    """One ``retrain`` process.

    Args:
        settings: the configuration (sections ``retrain``, ``model``, ``topics``, ``kafka``).
        metrics: the worker's metrics.
        stop: set it to stop after the step in progress.
        clock: monotonic seconds (injectable for tests).
    """

    def __init__(
        self,
        settings: Settings,
        metrics: RetrainMetrics,
        stop: threading.Event,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.stop = stop
        self.clock = clock
        _limit_threads(settings.retrain.threads)
        self.registry = Registry(settings.model.path)
        self.verifier = Verifier.from_settings(settings.model)
        self.signer = Signer.from_settings(settings.model)
        self.current = self._current_model()
        m = settings.model
        features = list(self.current.manifest.features) if self.current else m.features
        target = self.current.manifest.target if self.current else m.target
        if not features:
            raise ConfigError(
                "retrain needs the features of its first model: set SF_MODEL__FEATURES "
                f"(and SF_MODEL__TARGET), or put a model in SF_MODEL__PATH ({m.path})"
            )
        self.features = features
        self.target = target or features[0]
        self.window = self.current.manifest.window if self.current else m.window
        # A retrain keeps its model's calendar inputs (a first model has none).
        self.calendar = self.current.manifest.calendar if self.current else ()
        columns = [*self.features, *([] if self.target in self.features else [self.target])]
        r = settings.retrain
        self.history = History(columns, r.history_per_key, r.max_keys)
        self._next_schedule = clock() + r.interval_s
        self._trained_on = -1  # history.readings at the last run: no new data, no new run
        # Derived from the history and the current model, recomputed only when they change
        # (the trigger is checked every few seconds, mostly on unchanged data).
        self._windows: tuple[int, Windows] | None = None  # (history.readings, windows)
        self._live: tuple[int, str, Errors | None] | None = None  # (readings, version, errors)
        self._keras: tuple[str, Any] | None = None  # (version, Keras model) of the current
        self._runs = 0
        self._alive_at = clock()
        self._last_outcome = "none yet"

    def _current_model(self) -> ModelBundle | None:
        # A folder of plain bundle files (no registry.json) reads as promoted versions, the
        # newest current: the registry covers that case too.
        # With verification on, a current model whose release does not verify is not trained
        # from: its weights could be anyone's, and the result would be signed.
        try:
            return trusted_current(self.registry, self.verifier, self.settings.model.name)
        except SignatureError as exc:
            log.error(
                "refusing the current model of %s (%s): %s; the next model is trained from scratch",
                self.registry.path,
                exc.reason,
                exc,
            )
            return None

    # -- the loop --------------------------------------------------------------------------

    def run(self) -> int:
        """Consume and retrain until :attr:`stop` is set; returns the exit status."""
        warn_if_off(self.verifier, "retrain")
        http = HttpEndpoints(
            self.settings.metrics.host,
            self.settings.metrics.port,
            self.metrics.registry,
            alive=lambda: (self.clock() - self._alive_at < 3600, "main loop alive"),
            ready=lambda: (True, f"last run: {self._last_outcome}"),
        )
        http.start()
        if not wait_for_cluster(self.settings.kafka, self.stop, "retrain", self._waiting):
            http.stop()
            return 0
        consumer = self._consumer()
        log.info(
            "retraining %s from %s: window %d, features %s, target %s; current model %s",
            self.settings.model.name,
            self.settings.topics.input,
            self.window,
            self.features,
            self.target,
            self.current.version
            if self.current
            else f"none (first one after {self.settings.retrain.min_samples} windows)",
        )
        next_check = self.clock()
        try:
            while not self.stop.is_set():
                self._alive_at = self.clock()
                self._consume(consumer)
                if self.clock() >= next_check:
                    next_check = self.clock() + _CHECK_EVERY_S
                    trigger = self.trigger()
                    if trigger is not None:
                        self.retrain(trigger)
        finally:
            consumer.close(autocommit=False)
            http.stop()
        return 0

    def _waiting(self, reason: str) -> None:
        self._alive_at = self.clock()
        self._last_outcome = f"waiting for Kafka: {reason}"

    def _consumer(self) -> Any:
        s = self.settings
        consumer = KafkaConsumer(
            s.topics.input,
            **client_config(s.kafka),
            group_id=s.retrain.group_id,
            enable_auto_commit=True,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            max_poll_records=5000,
        )
        return consumer

    def _consume(self, consumer: Any) -> None:
        try:
            polled = consumer.poll(timeout_ms=500)
        except KafkaError as exc:
            log.warning("polling %s failed: %r", self.settings.topics.input, exc)
            self.stop.wait(1.0)
            return
        for records in polled.values():
            for record in records:
                self.add_record(record.key, record.value)
        self.metrics.history_keys.set(len(self.history))

    def add_record(self, key: bytes | None, value: bytes | None) -> bool:
        """Add one input record to the history; invalid records are skipped (``serve``
        dead-letters them)."""
        try:
            reading = decode_reading(
                key, value, max_bytes=self.settings.processing.max_record_bytes
            )
        except InvalidRecord:
            return False
        added = self.history.add(reading.key, reading.ts, reading.values)
        if added:
            self.metrics.readings.inc()
        return added

    # -- when to train ---------------------------------------------------------------------

    def windows(self) -> Windows:
        """Every training window in the history (cached until the history changes)."""
        readings = self.history.readings
        if self._windows is None or self._windows[0] != readings:
            series = self.history.series(self.features, self.target)
            series = [with_calendar(s, self.calendar) for s in series]
            self._windows = (readings, make_windows(series, self.window))
        return self._windows[1]

    def trigger(self) -> Trigger | None:
        """Why to retrain now, or None."""
        r = self.settings.retrain
        if self.current is None:
            return "first" if len(self.windows()) >= r.min_samples else None
        if self.history.readings == self._trained_on:
            return None  # nothing new since the last run: it would train the same model
        if self.clock() >= self._next_schedule:
            return "schedule"
        live = self.live_errors()
        if live is None:
            return None
        reference = self.current.manifest.training.metrics.get("val_mae")
        if reference and live.mae > r.drift_factor * reference:
            log.warning(
                "drift: live MAE %.4f is above %.1f x validation MAE %.4f",
                live.mae,
                r.drift_factor,
                reference,
            )
            return "drift"
        return None

    def live_errors(self) -> Errors | None:
        """The current model's errors on the windows newer than its training data (what
        ``serve`` forecast with it); None until there are ``min_scored`` of them."""
        if self.current is None:
            return None
        readings, version = self.history.readings, self.current.version
        if self._live is not None and self._live[:2] == (readings, version):
            return self._live[2]
        self._live = (readings, version, self._measure_live())
        return self._live[2]

    def _measure_live(self) -> Errors | None:
        assert self.current is not None
        trained_until = self.current.manifest.training.data_end_ts or 0
        windows = self.windows()
        newer = windows.select(windows.target_ts > trained_until)
        if len(newer) < self.settings.retrain.min_scored:
            return None
        if len(newer) > _LIVE_WINDOWS_MAX:
            newest = newer.target_ts >= sorted(newer.target_ts)[-_LIVE_WINDOWS_MAX]
            newer = newer.select(newest)
        errors = self._errors(self.current, newer)
        self.metrics.live_mae.set(errors.mae)
        return errors

    # -- training and the gate -------------------------------------------------------------

    def retrain(self, trigger: Trigger) -> Verdict | None:
        """Train a candidate on the history and put it through the gate."""
        self.metrics.triggers.labels(reason=trigger).inc()
        r = self.settings.retrain
        started = time.monotonic()
        self._trained_on = self.history.readings
        self._runs += 1
        try:
            windows = self.windows()
            split = split_windows(windows, _VALIDATION_SHARE, r.holdout_fraction)
            first = self.current is None
            log.info(
                "retraining (%s): %d windows from %d keys; %s",
                trigger,
                len(windows),
                len(self.history),
                "first model, from scratch" if first else f"warm start from {self.current.version}",  # type: ignore[union-attr]
            )
            candidate = fit(
                split,
                features=self.features,
                target=self.target,
                options=TrainOptions(
                    window=self.window,
                    epochs=r.first_epochs if first else r.epochs,
                    batch_size=r.batch_size,
                    patience=r.patience,
                    validation=_VALIDATION_SHARE,
                    holdout=r.holdout_fraction,
                    seed=41 + self._runs,
                    damping=True,
                    # Robust to the spikes of sensor data (a first model sets them; a
                    # retrain keeps its current model's scaling): with them the Beijing
                    # replay's models beat persistence out of sample, without them not.
                    log_skewed=True,
                    target_transform="asinh",
                    calendar=self.calendar,
                ),
                source=f"kafka:{self.settings.topics.input}",
                initial=self.current,
                series=len(self.history),
                data_span=_span(windows),
                categories=dict(self.current.manifest.categories) if self.current else None,
                name=self.settings.model.name,
                report=lambda line: log.info("retrain: %s", line),
            )
            verdict = self.consider(candidate, split)
        except (DataError, BundleError, KafkaError, OSError) as exc:
            self.metrics.runs.labels(outcome="failed").inc()
            self._last_outcome = f"failed: {exc}"
            log.error("retraining failed: %s", exc)
            verdict = None
        self.metrics.duration_seconds.observe(time.monotonic() - started)
        self.metrics.last_run_timestamp.set(time.time())
        self._next_schedule = self.clock() + r.interval_s
        return verdict

    def consider(self, candidate: ModelBundle, split: Split) -> Verdict:
        """The promotion gate: score ``candidate`` and the current model on
        ``split.holdout``; promote (registry + model topic) or reject (registry, logged,
        counted)."""
        holdout = split.holdout
        if len(holdout) == 0:
            raise DataError("no held-out windows to judge the candidate on")
        candidate_errors = self._errors(candidate, holdout)
        current_errors = self._errors(self.current, holdout) if self.current is not None else None
        verdict = gate(candidate_errors, current_errors)
        for part, windows in (
            ("train", split.train),
            ("validation", split.validation),
            ("holdout", holdout),
        ):
            self.metrics.samples.labels(part=part).set(len(windows))
        self.metrics.holdout_mae.labels(model="candidate").set(candidate_errors.mae)
        self.metrics.holdout_mae.labels(model="persistence").set(candidate_errors.persistence_mae)
        if current_errors is not None:
            self.metrics.holdout_mae.labels(model="current").set(current_errors.mae)
        figures = {
            "holdout_mae": candidate_errors.mae,
            "holdout_rmse": candidate_errors.rmse,
            "persistence_mae": candidate_errors.persistence_mae,
            **({"current_mae": current_errors.mae} if current_errors else {}),
        }
        add_judged(
            self.settings,
            self.registry,
            candidate,
            promote=verdict.promote,
            reason=verdict.reason,
            figures=figures,
            signer=self.signer,
        )
        if verdict.promote:
            self.current = candidate
            self.metrics.runs.labels(outcome="promoted").inc()
            log.info("promoted %s: %s", candidate.version, verdict.reason)
        else:
            self.metrics.runs.labels(outcome="rejected").inc()
            log.warning("rejected %s: %s", candidate.version, verdict.reason)
        self._last_outcome = f"{'promoted' if verdict.promote else 'rejected'} {candidate.version}"
        return verdict

    def _errors(self, bundle: ModelBundle, windows: Windows) -> Errors:
        """``bundle``'s errors on ``windows``; the current model's Keras instance is built
        once per version, not per check."""
        if bundle is not self.current:
            return score(predict(bundle.build_model(), bundle.manifest.scaling, windows), windows)
        if self._keras is None or self._keras[0] != bundle.version:
            self._keras = (bundle.version, bundle.build_model())
        return score(predict(self._keras[1], bundle.manifest.scaling, windows), windows)


def _span(windows: Windows) -> tuple[int, int] | None:
    if len(windows) == 0:
        return None
    return int(windows.target_ts.min()), int(windows.target_ts.max())


def _limit_threads(threads: int) -> None:
    """Cap TensorFlow's thread pools so that training leaves CPU to the forecasters."""
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:  # TensorFlow already initialised (tests): keep its pools
        log.debug("TensorFlow thread pools already fixed")
