"""``stream-forecaster backtest``: walk-forward one-step forecasts on held-out data."""

from __future__ import annotations

import argparse
import json
import logging
from datetime import UTC, datetime
from pathlib import Path

from stream_forecaster.cli.arguments import (
    HelpFormatter,
    add_table_arguments,
    require_training,
    table_spec,
)
from stream_forecaster.settings import Settings

log = logging.getLogger("stream_forecaster")


def add_parser(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    backtest = sub.add_parser(
        "backtest",
        parents=[common],
        help="walk-forward one-step forecasts on held-out data, against three baselines",
        description="Forecast each step of the held-out tail from the actual readings before "
        "it, and print MAE, RMSE and skill of the model and of three baselines on the same "
        "samples: persistence (the last value), seasonal naive (the value a day before) and "
        "a ridge regression on the same windows (fitted on the data before the tail); "
        "pooled, then MAE per key. By default the tail is exactly what `train` held out; "
        "the CSV is read with the options recorded in the bundle unless given here.",
        formatter_class=HelpFormatter,
    )
    add_table_arguments(backtest)
    backtest.set_defaults(missing=None)
    backtest.add_argument(
        "--model",
        type=Path,
        metavar="BUNDLE",
        help="bundle file, or a folder: its current model, as serve and `models list` "
        "see it (default: SF_MODEL__PATH)",
    )
    backtest.add_argument(
        "--tail",
        type=float,
        metavar="SHARE",
        help="evaluate the newest SHARE of samples instead of the bundle's held-out data",
    )
    backtest.add_argument(
        "--from",
        dest="from_ts",
        type=_time,
        metavar="TIME",
        help="evaluate the samples from TIME on (a date such as 2014-11-01, UTC, or an RFC "
        "3339 time); wins over --tail",
    )
    backtest.add_argument(
        "--out",
        type=Path,
        metavar="PNG",
        help="write a plot of actual against forecast to this PNG file",
    )
    backtest.add_argument(
        "--json", type=Path, metavar="FILE", help="also write the figures as JSON"
    )
    backtest.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    require_training("backtest")
    from stream_forecaster.data.tables import read_table
    from stream_forecaster.model.bundle import ModelBundle
    from stream_forecaster.model.registry import current_file
    from stream_forecaster.training.backtest import plot_backtest, run_backtest

    bundle = ModelBundle.load(current_file(args.model or settings.model.path))
    manifest = bundle.manifest
    recorded = manifest.training.table
    for name in ("key_column", "time_column", "time_parts"):
        if getattr(args, name) is None and recorded.get(name) is not None:
            setattr(args, name, recorded[name])
    spec = table_spec(
        args,
        features=list(manifest.features),
        target=manifest.target,
        categorical=tuple(manifest.categories),
        categories=manifest.categories,
        missing=args.missing or recorded.get("missing", "ffill"),
    )
    table = read_table(args.csv, spec)
    log.info("backtesting model %s (%s)", manifest.version, manifest.name)
    result = run_backtest(bundle, table, tail=args.tail, from_ts=args.from_ts)
    print(result.table())
    if args.out:
        print(f"wrote plot {plot_backtest(result, table, args.out)}")
    if args.json:
        figures = {
            "model_version": manifest.version,
            "csv": str(args.csv),
            "samples": result.samples,
            "from_ts": result.from_ts,
            "to_ts": result.to_ts,
            "mae": result.mae,
            "rmse": result.rmse,
            "persistence_mae": result.persistence_mae,
            "persistence_rmse": result.persistence_rmse,
            "skill": result.skill,
            "baselines": result.comparison.as_dict(),
        }
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


def _time(text: str) -> int:
    """Epoch milliseconds of a date or an RFC 3339 time (UTC when it has no offset)."""
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a date such as 2014-11-01 or a time such as 2014-11-01T06:00:00Z, "
            f"got {text!r}"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp() * 1000)
