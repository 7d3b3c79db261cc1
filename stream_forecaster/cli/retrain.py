"""``stream-forecaster retrain``: keep the model fresh, promote only what is better."""

from __future__ import annotations

import argparse

from stream_forecaster.cli.arguments import HelpFormatter, require_training, stop_on_signals
from stream_forecaster.settings import Settings


def add_parser(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    retrain = sub.add_parser(
        "retrain",
        parents=[common],
        help="keep the model fresh: retrain on recent history, promote only if better",
        description="Read SF_TOPICS__INPUT with its own consumer group "
        "(SF_RETRAIN__GROUP_ID) into a bounded history per key. Train a first model once "
        "SF_RETRAIN__MIN_SAMPLES windows are there (it must beat persistence), then "
        "retrain every SF_RETRAIN__INTERVAL_S seconds, or early when the current model's "
        "MAE on the newest readings exceeds its validation MAE times "
        "SF_RETRAIN__DRIFT_FACTOR, warm-starting from the current model. A candidate is "
        "promoted only if its MAE on the newest held-out windows (never trained on) beats "
        "the current model's on the same windows: it is then written to the registry "
        "folder SF_MODEL__PATH and published to SF_TOPICS__MODELS (signed with "
        "SF_MODEL__SIGNING_SECRET when set), where every serve picks it up. Rejected "
        "candidates are kept in the registry with the reason. Serves /metrics, /healthz, "
        "/readyz on SF_METRICS__PORT. SIGTERM or Ctrl-C: stop after the step in progress.",
        epilog="main settings (environment or --config file):\n"
        "  SF_RETRAIN__INTERVAL_S, SF_RETRAIN__DRIFT_FACTOR, SF_RETRAIN__MIN_SAMPLES,\n"
        "  SF_RETRAIN__HISTORY_PER_KEY, SF_RETRAIN__MAX_KEYS, SF_RETRAIN__HOLDOUT_FRACTION,\n"
        "  SF_RETRAIN__EPOCHS, SF_RETRAIN__FIRST_EPOCHS, SF_RETRAIN__PATIENCE,\n"
        "  SF_RETRAIN__THREADS\n"
        "  SF_MODEL__PATH, SF_MODEL__NAME, SF_MODEL__FEATURES, SF_MODEL__TARGET,\n"
        "  SF_MODEL__WINDOW, SF_MODEL__SIGNING_SECRET, SF_TOPICS__MODELS",
        formatter_class=HelpFormatter,
    )
    retrain.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    require_training("retrain")
    from prometheus_client import REGISTRY

    from stream_forecaster.monitoring.retrain_metrics import RetrainMetrics
    from stream_forecaster.retraining.worker import RetrainWorker

    stop = stop_on_signals(
        "stopping after the step in progress", settings.processing.shutdown_timeout_s
    )
    return RetrainWorker(settings, RetrainMetrics(REGISTRY), stop).run()
