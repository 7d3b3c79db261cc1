"""``stream-forecaster watch``: a live console view of running forecasters."""

from __future__ import annotations

import argparse

from stream_forecaster.cli.arguments import HelpFormatter, positive_float
from stream_forecaster.settings import Settings


def add_parser(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:

    p = sub.add_parser(
        "watch",
        parents=[common],
        help="live console view of running forecasters: throughput, latency, forecasts",
        description="Every --interval, scrape the /metrics of one or more serve processes and "
        "show, summed over them and computed over that interval: forecasts, records and "
        "invalid records per second, end-to-end latency p50/p99 and inference p99 (from "
        "histogram bucket deltas, like Prometheus' histogram_quantile; marked cumulative when "
        "the interval observed nothing), active keys, consumer lag, the model served, and the "
        "latest forecasts on SF_TOPICS__OUTPUT. On a terminal the screen is redrawn in place; "
        "otherwise (logs, pipes) one line per interval. Ctrl-C or SIGTERM stops it (status 0).",
        epilog="example, two instances:\n  stream-forecaster watch --plain "
        "--metrics-url http://a:9464/metrics --metrics-url http://b:9464/metrics",
        formatter_class=HelpFormatter,
    )
    arg = p.add_argument
    arg(
        "--metrics-url",
        action="append",
        metavar="URL",
        help="a serve process's /metrics; "
        "repeat for several, which are summed (default http://127.0.0.1:<SF_METRICS__PORT>"
        "/metrics); one not answering is shown as down",
    )
    arg(
        "--interval",
        type=positive_float,
        default=1.0,
        metavar="S",
        help="seconds between refreshes; rates and quantiles cover the last interval (default 1)",
    )
    arg(
        "--forecasts",
        type=lambda t: round(positive_float(t)) or 1,
        default=8,
        metavar="N",
        help="how many of the latest forecasts on SF_TOPICS__OUTPUT to show (default 8)",
    )
    arg("--no-forecasts", action="store_true", help="do not read the output topic")
    arg(
        "--duration",
        type=positive_float,
        metavar="S",
        help="stop after S seconds (default: run until Ctrl-C or SIGTERM)",
    )
    arg(
        "--plain",
        action="store_true",
        help="one line per interval even on a terminal (the default when not on one)",
    )
    p.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    """The view, until --duration, Ctrl-C or SIGTERM."""
    from stream_forecaster.monitoring.console import watch

    return watch(args, settings)
