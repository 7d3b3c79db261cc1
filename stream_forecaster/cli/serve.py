"""``stream-forecaster serve``: consume readings, forecast one step ahead per key, publish."""

from __future__ import annotations

import argparse

from stream_forecaster.cli.arguments import HelpFormatter, stop_on_signals
from stream_forecaster.settings import Settings


def add_parser(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    serve = sub.add_parser(
        "serve",
        parents=[common],
        help="consume readings, forecast one step ahead per key, publish forecasts",
        description="Consume readings from SF_TOPICS__INPUT, keep a rolling window per series "
        "key, run the LSTM in one batched call per poll for every key whose window is full, "
        "publish forecasts to SF_TOPICS__OUTPUT and bad records to SF_TOPICS__DEAD_LETTER, "
        "then commit offsets (SF_PROCESSING__GUARANTEE=exactly_once: in one transaction). "
        "Serves /metrics, /healthz and /readyz on SF_METRICS__PORT. Waits for a model bundle "
        "at SF_MODEL__PATH if there is none yet. SIGTERM or Ctrl-C: finish the batch in "
        "flight, commit, leave the group, exit.",
        epilog="main settings (environment or --config file; `stream-forecaster config` shows "
        "them all):\n"
        "  SF_KAFKA__BOOTSTRAP_SERVERS, SF_KAFKA__SECURITY_PROTOCOL, SF_KAFKA__SASL_*\n"
        "  SF_TOPICS__INPUT, SF_TOPICS__OUTPUT, SF_TOPICS__DEAD_LETTER\n"
        "  SF_MODEL__PATH (bundle file or folder), SF_MODEL__FEATURES, SF_MODEL__TARGET\n"
        "  SF_PROCESSING__GUARANTEE (at_least_once|exactly_once), SF_PROCESSING__GROUP_ID,\n"
        "  SF_PROCESSING__MAX_BATCH, SF_PROCESSING__MAX_WAIT_MS, SF_PROCESSING__TRANSACTIONAL_ID\n"
        "  SF_WINDOWS__INTERVAL_MS, SF_WINDOWS__MAX_GAP, SF_WINDOWS__GAP_POLICY,\n"
        "  SF_WINDOWS__LATE_TOLERANCE_MS, SF_WINDOWS__KEY_TTL_S\n"
        "  SF_METRICS__HOST, SF_METRICS__PORT",
        formatter_class=HelpFormatter,
    )
    serve.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from prometheus_client import REGISTRY

    from stream_forecaster.serving.recorder import ServeRecorder
    from stream_forecaster.serving.service import ForecastService

    stop = stop_on_signals("finishing the batch in flight", settings.processing.shutdown_timeout_s)
    return ForecastService(settings, ServeRecorder(REGISTRY), stop).run()
