"""``stream-forecaster train``: the seed LSTM trained on a CSV, written as a model bundle."""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from stream_forecaster.cli.arguments import (
    HelpFormatter,
    add_table_arguments,
    csv_list,
    require_training,
    table_spec,
)
from stream_forecaster.settings import ConfigError, Settings

if TYPE_CHECKING:
    from stream_forecaster.data.series import Table
    from stream_forecaster.model.bundle import ModelBundle

log = logging.getLogger("stream_forecaster")


def add_parser(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    train = sub.add_parser(
        "train",
        parents=[common],
        help="train the seed LSTM on a CSV and write a model bundle",
        description="Train the seed LSTM (LSTM(50, relu) -> Dropout(0.2) -> Dense(1)) on "
        "historical readings and write a model bundle. The newest --holdout share is never "
        "trained on, so that `backtest` can score the model on unseen data; of the rest, the "
        "newest --validation share drives early stopping. Several series keys train one "
        "shared model; windows never cross keys.",
        epilog="example (Beijing PM2.5, the sample data in a checkout):\n"
        "  stream-forecaster train \\\n"
        "    --csv stream_forecaster/data/samples/beijing_pm25_hourly.csv \\\n"
        "    --time-parts year,month,day,hour "
        "--features pm2.5,DEWP,TEMP,PRES,cbwd,Iws,Is,Ir \\\n    --categorical cbwd "
        "--target pm2.5 --out models/beijing.sfmodel",
        formatter_class=HelpFormatter,
    )
    add_table_arguments(train)
    model = train.add_argument_group("the model")
    model.add_argument(
        "--features",
        type=csv_list,
        metavar="A,B,C",
        help="feature columns in model order (default: SF_MODEL__FEATURES)",
    )
    model.add_argument(
        "--target",
        metavar="COLUMN",
        help="column to forecast one step ahead (default: SF_MODEL__TARGET, "
        "else the first feature)",
    )
    model.add_argument(
        "--categorical",
        type=csv_list,
        default=[],
        metavar="A,B",
        help="feature columns holding categories (text), encoded as codes",
    )
    model.add_argument(
        "--window",
        type=int,
        metavar="N",
        help="readings per input window (default: SF_MODEL__WINDOW, 24)",
    )
    model.add_argument(
        "--target-mode",
        choices=["delta", "level"],
        default="delta",
        help="the network outputs the next change of the target (default) or "
        "its level; forecasts are always in the target's units",
    )
    model.add_argument(
        "--calendar",
        type=_calendar,
        default="auto",
        metavar="auto|none|A,B",
        help="calendar inputs computed from each reading's time, two each (sine and "
        "cosine): hour_of_day, day_of_week. auto (default): trains with both and without, "
        "and keeps the one with the lower validation MAE (twice the training time); none; "
        "or a list",
    )
    model.add_argument(
        "--name",
        help="model name recorded in the bundle: serve and retrain take the model of "
        "SF_MODEL__NAME (default: SF_MODEL__NAME, default)",
    )
    fit = train.add_argument_group("training")
    fit.add_argument("--epochs", type=int, default=50, help="maximum epochs (default 50)")
    fit.add_argument("--batch-size", type=int, default=64, help="default 64")
    fit.add_argument("--learning-rate", type=float, default=1e-3, help="Adam's (default 1e-3)")
    fit.add_argument(
        "--patience",
        type=int,
        default=5,
        help="stop after this many epochs without a better validation loss",
    )
    fit.add_argument(
        "--validation",
        type=float,
        default=0.1,
        help="share of the training period used for validation (default 0.1)",
    )
    fit.add_argument(
        "--holdout",
        type=float,
        default=0.2,
        help="newest share of samples kept out for the backtest (default 0.2)",
    )
    fit.add_argument("--seed", type=int, default=42, help="random seed (default 42)")
    fit.add_argument(
        "--require-skill",
        type=float,
        metavar="X",
        help="fail (exit 1, nothing written) unless the model's skill against persistence "
        "on the held-out data is at least X (e.g. 0: it must not lose to persistence); "
        "without it, a model that loses is written with a warning",
    )
    train.add_argument(
        "--out",
        type=Path,
        metavar="BUNDLE",
        help="bundle file to write, or a folder to write <version>.sfmodel into "
        "(default: SF_MODEL__PATH, models/)",
    )
    train.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    require_training("train")
    from stream_forecaster.data.tables import read_table
    from stream_forecaster.model.calendar import CALENDAR_INPUTS
    from stream_forecaster.model.handoff import sign_file
    from stream_forecaster.model.registry import MANIFEST_NAME, Registry
    from stream_forecaster.model.signing import Signer
    from stream_forecaster.training.fit import TrainOptions, train

    features = args.features or settings.model.features
    if not features:
        raise ConfigError("no features: pass --features a,b,c or set SF_MODEL__FEATURES")
    target = args.target or settings.model.target or features[0]
    spec = table_spec(
        args,
        features=features,
        target=target,
        categorical=tuple(args.categorical),
        categories={},
        missing=args.missing,
    )
    try:
        options = TrainOptions(
            window=args.window or settings.model.window,
            epochs=args.epochs,
            batch_size=args.batch_size,
            learning_rate=args.learning_rate,
            patience=args.patience,
            validation=args.validation,
            holdout=args.holdout,
            target_mode=args.target_mode,
            seed=args.seed,
        )
        candidates = [(), CALENDAR_INPUTS] if args.calendar == "auto" else [args.calendar]
        options_by_calendar = [replace(options, calendar=c) for c in candidates]
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    signer = Signer.from_settings(settings.model)  # a bad key fails before the training
    table = read_table(args.csv, spec)
    trained = []
    for i, choice in enumerate(options_by_calendar):
        if len(options_by_calendar) > 1:
            log.info("calendar inputs: %s", ", ".join(choice.calendar) or "none")
        trained.append(
            train(
                table,
                spec,
                choice,
                source=args.csv.name,
                name=args.name or settings.model.name,
                report=log.info,
                print_summary=print if i == 0 else None,
            )
        )
    bundle = min(trained, key=lambda b: b.manifest.training.metrics["val_mae"])
    if len(trained) > 1:
        print(
            "calendar inputs (--calendar auto): "
            + "; ".join(
                f"{', '.join(b.manifest.calendar) or 'none'}: validation MAE "
                f"{b.manifest.training.metrics['val_mae']:.4f}"
                for b in trained
            )
            + f"; kept {', '.join(bundle.manifest.calendar) or 'none'}"
        )
    if not _beats_baselines(bundle, table, args.require_skill):
        return 1
    out = args.out or settings.model.path
    metrics = bundle.manifest.training.metrics
    if (out / MANIFEST_NAME).is_file():  # a registry: what it does not name is never served
        # A candidate: only `models promote` signs it (only promoted versions are signed).
        Registry(out).add(bundle, metrics=dict(metrics))
        print(
            f"added model {bundle.version} to the registry {out} as a candidate; "
            f"`stream-forecaster models promote {bundle.version}` signs and serves it"
        )
    else:
        if out.suffix != ".sfmodel" and not out.exists():
            out.mkdir(parents=True)
        written = bundle.save(out)
        print(f"wrote model bundle {written} (version {bundle.version})")
        sidecar = sign_file(written, bundle, signer)
        if sidecar is not None:
            print(f"signed it with {signer.describe()}: {sidecar}")
    print(
        f"validation MAE {metrics['val_mae']:.4f}, persistence {metrics['val_persistence_mae']:.4f}"
    )
    return 0


def _beats_baselines(bundle: ModelBundle, table: Table, required: float | None) -> bool:
    """Print the model against the baselines on the held-out data; warn when it loses to
    persistence. Returns False when ``required`` skill is not reached."""
    from stream_forecaster.training.backtest import run_backtest

    if bundle.manifest.training.holdout_from_ts is None:
        if required is not None:
            log.warning("--require-skill needs held-out data (--holdout > 0): not checked")
        return True
    result = run_backtest(bundle, table)
    print("on the held-out data (never trained on):")
    for line in result.comparison.lines():
        print(f"  {line}")
    skill = result.comparison.skill()
    if required is not None and not skill >= required:
        print(
            f"stream-forecaster train: error: skill against persistence {skill:+.4f} is below "
            f"--require-skill {required:+.4f}; nothing written",
            file=sys.stderr,
        )
        return False
    if not skill > 0:
        log.warning(
            "the model does not beat persistence on the held-out data (skill %+.4f): it "
            "forecasts worse than repeating the last value; --require-skill 0 refuses such "
            "a model",
            skill,
        )
    return True


def _calendar(text: str) -> str | tuple[str, ...]:
    """``auto``, or the calendar inputs named (``none``: no calendar inputs)."""
    from stream_forecaster.model.calendar import CALENDAR_INPUTS

    text = text.strip()
    if text == "auto":
        return text
    names = () if text == "none" else tuple(n.strip() for n in text.split(",") if n.strip())
    unknown = [n for n in names if n not in CALENDAR_INPUTS]
    if unknown or len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(
            f"expected auto, none or some of {', '.join(CALENDAR_INPUTS)} (each once), got {text!r}"
        )
    return names
