"""The ``stream-forecaster`` command line: one parser, one module per command.

Each command's module (``stream_forecaster/cli/<command>.py``) adds its parser and runs it;
what a command does lives in the package of its concern, imported when the command runs,
so that ``--help`` and ``config`` start in milliseconds and a serving install needs no
training libraries. Errors the user can fix (bad settings, bad data, bad bundle) print one
clear line and exit with status 2.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from stream_forecaster.cli import (
    backtest,
    bench,
    config,
    doctor,
    models,
    retrain,
    serve,
    simulate,
    train,
    watch,
)
from stream_forecaster.cli.arguments import EXIT_USAGE, HelpFormatter
from stream_forecaster.logs import configure_logging
from stream_forecaster.settings import CONFIG_FILE_ENV, ConfigError, load_settings
from stream_forecaster.version import __version__

log = logging.getLogger("stream_forecaster")

#: The commands, in the order ``--help`` lists them.
COMMANDS = (config, doctor, serve, retrain, train, backtest, simulate, watch, models, bench)

_EPILOG = """\
Every setting can also come from the environment, prefix SF_, sections joined by __
(e.g. SF_KAFKA__BOOTSTRAP_SERVERS=broker:9092) or from a TOML/JSON file given with
--config or $SF_CONFIG_FILE. `stream-forecaster config` shows the effective values.
"""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(
        prog="stream-forecaster",
        description="One-step-ahead LSTM forecasts for live sensor feeds on Kafka.",
        epilog=_EPILOG,
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help=f"TOML or JSON settings file (default: ${CONFIG_FILE_ENV}); the environment wins",
    )
    common.add_argument(
        "--log-level",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="log verbosity (default: the log_level setting, INFO)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS:
        command.add_parser(sub, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``stream-forecaster`` command; returns the exit status."""
    from kafka.errors import AuthorizationError

    from stream_forecaster.data.tables import DataError
    from stream_forecaster.kafka.errors import ClusterError
    from stream_forecaster.model.bundle import BundleError
    from stream_forecaster.model.registry import RegistryError

    args = build_parser().parse_args(argv)
    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        configure_logging(args.log_level or "INFO")
        print(f"stream-forecaster: configuration error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    configure_logging(args.log_level or settings.log_level)
    try:
        return int(args.handler(args, settings))
    except (ConfigError, DataError, BundleError, RegistryError) as exc:  # the user's to fix
        print(f"stream-forecaster {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ClusterError as exc:  # the cluster's state
        log.debug("%s failed", args.command, exc_info=True)
        print(f"stream-forecaster {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except AuthorizationError as exc:  # a missing ACL: the operator's to grant
        log.debug("%s failed", args.command, exc_info=True)
        print(f"stream-forecaster {args.command}: error: {not_authorized(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"stream-forecaster {args.command}: interrupted", file=sys.stderr)
        return 130


def not_authorized(exc: Exception) -> str:
    """One line for a Kafka authorization failure: what was refused, and where the ACLs are
    listed."""
    what = getattr(exc, "description", None) or "not authorized"
    return (
        f"Kafka refused: {type(exc).__name__}: {what} ({exc}); grant the ACLs this command "
        "needs (docs: how-to/your-cluster, ACLs); `stream-forecaster doctor` checks them"
    )
