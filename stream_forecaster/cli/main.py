"""The ``stream-forecaster`` command line: argument parsing and dispatch, nothing more.

Each subcommand is a small function that turns its arguments into calls of the module
that owns the concern (settings, dataset, training, backtest). Errors the user can fix
(bad settings, bad data, bad bundle) print one clear line and exit with status 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stream_forecaster import __version__
from stream_forecaster.cli.arguments import csv_list
from stream_forecaster.logs import configure_logging
from stream_forecaster.monitoring.console import add_parser as add_watch_parser
from stream_forecaster.settings.config import CONFIG_FILE_ENV, ConfigError, Settings, load_settings
from stream_forecaster.simulate.replay import add_parser as add_simulate_parser

if TYPE_CHECKING:
    from stream_forecaster.data.tables import TableSpec
    from stream_forecaster.model.registry import Registry

log = logging.getLogger("stream_forecaster")

EXIT_USAGE = 2

_EPILOG = """\
Every setting can also come from the environment, prefix SF_, sections joined by __
(e.g. SF_KAFKA__BOOTSTRAP_SERVERS=broker:9092) or from a TOML/JSON file given with
--config or $SF_CONFIG_FILE. `stream-forecaster config` shows the effective values.
"""


class _Formatter(argparse.HelpFormatter):
    """Wraps one-paragraph texts; keeps texts with line breaks (examples) as written."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if "\n" in text:
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(
        prog="stream-forecaster",
        description="One-step-ahead LSTM forecasts for live sensor feeds on Kafka.",
        epilog=_EPILOG,
        formatter_class=_Formatter,
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

    config = sub.add_parser(
        "config",
        parents=[common],
        help="print the effective configuration (secrets masked)",
        description="Print the effective configuration as JSON, secrets masked. Fails, "
        "naming the setting, when a value is invalid.",
    )
    config.set_defaults(handler=_cmd_config)

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
        formatter_class=_Formatter,
    )
    serve.set_defaults(handler=_cmd_serve)

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
        formatter_class=_Formatter,
    )
    retrain.set_defaults(handler=_cmd_retrain)

    _add_train_parser(sub, common)
    _add_backtest_parser(sub, common)
    add_simulate_parser(sub, common)
    add_watch_parser(sub, common)
    _add_models_parser(sub, common)
    _add_bench_parser(sub, common)
    return parser


def _add_table_arguments(parser: argparse.ArgumentParser) -> None:
    table = parser.add_argument_group("reading the CSV")
    table.add_argument(
        "--csv",
        type=Path,
        required=True,
        metavar="FILE",
        help="CSV file of readings (.csv, or compressed .gz/.xz/.bz2)",
    )
    table.add_argument(
        "--key-column",
        metavar="COLUMN",
        help="column naming each row's series key (default: one series)",
    )
    table.add_argument(
        "--time-column",
        metavar="COLUMN",
        help="column of epoch milliseconds or date-times, naive = UTC "
        "(default: the first of ts, timestamp, time, date, datetime)",
    )
    table.add_argument(
        "--time-parts",
        metavar="COLS",
        type=csv_list,
        help="columns that make up the time, e.g. year,month,day,hour "
        "(default when no time column is found and these four exist)",
    )
    table.add_argument(
        "--missing",
        choices=["ffill", "drop"],
        default="ffill",
        help="missing values: fill forward within a series (default), or drop "
        "the rows; samples whose target was missing are never used",
    )


def _add_train_parser(
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
        epilog="example (Beijing PM2.5):\n  stream-forecaster train --csv "
        "examples/data/beijing_pm25_hourly.csv \\\n    --time-parts year,month,day,hour "
        "--features pm2.5,DEWP,TEMP,PRES,cbwd,Iws,Is,Ir \\\n    --categorical cbwd "
        "--target pm2.5 --out models/beijing.sfmodel",
        formatter_class=_Formatter,
    )
    _add_table_arguments(train)
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
    model.add_argument("--name", default="default", help="model name recorded in the bundle")
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
    train.add_argument(
        "--out",
        type=Path,
        metavar="BUNDLE",
        help="bundle file to write, or a folder to write <version>.sfmodel into "
        "(default: SF_MODEL__PATH, models/)",
    )
    train.set_defaults(handler=_cmd_train)


def _add_backtest_parser(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    backtest = sub.add_parser(
        "backtest",
        parents=[common],
        help="walk-forward one-step forecasts on held-out data, against persistence",
        description="Forecast each step of the held-out tail from the actual readings before "
        "it, and print MAE and RMSE of the model and of the persistence baseline (the last "
        "value). By default the tail is exactly what `train` held out; the CSV is read with "
        "the options recorded in the bundle unless given here.",
        formatter_class=_Formatter,
    )
    _add_table_arguments(backtest)
    backtest.set_defaults(missing=None)
    backtest.add_argument(
        "--model",
        type=Path,
        metavar="BUNDLE",
        help="bundle file or folder (default: SF_MODEL__PATH)",
    )
    backtest.add_argument(
        "--tail",
        type=float,
        metavar="SHARE",
        help="evaluate the newest SHARE of samples instead of the bundle's held-out data",
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
    backtest.set_defaults(handler=_cmd_backtest)


def _add_models_parser(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    models = sub.add_parser(
        "models",
        help="list, promote and roll back model versions in the registry",
        description="Manage the model versions in the registry folder SF_MODEL__PATH by hand. "
        "`promote` and `rollback` change the version recorded as current in registry.json "
        "and publish that bundle to the model topic SF_TOPICS__MODELS under the key "
        "SF_MODEL__NAME (signed with SF_MODEL__SIGNING_SECRET when set), so every running "
        "forecaster swaps to it without a restart.",
        epilog="examples:\n"
        "  stream-forecaster models list\n"
        "  stream-forecaster models promote 20260101T000000Z-1a2b3c4d\n"
        "  stream-forecaster models rollback",
        formatter_class=_Formatter,
    )
    actions = models.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser(
        "list",
        parents=[common],
        help="print every version: created, status, current, holdout MAE, reason",
        description="Print a table of every model version in the registry folder "
        "SF_MODEL__PATH, oldest first: version, creation time, status (promoted, rejected, "
        "candidate), a * on the current one (the one forecasters serve), its MAE on the "
        "held-out data of the promotion gate when recorded, and why it was rejected. A "
        "folder without registry.json lists its *.sfmodel files, the newest current.",
        formatter_class=_Formatter,
    )
    listing.set_defaults(handler=_cmd_models_list)
    promote = actions.add_parser(
        "promote",
        parents=[common],
        help="make VERSION current and publish it to the model topic",
        description="Publish version VERSION of the registry SF_MODEL__PATH to the model "
        "topic SF_TOPICS__MODELS (key SF_MODEL__NAME; signed when SF_MODEL__SIGNING_SECRET "
        "is set, after checking the signature recorded for it), then record it as current "
        "and append it to the promotion history. Any version can be promoted, a rejected "
        "one too. Promoting the current version publishes it again. Exit status 2 for an "
        "unknown version, 1 when Kafka cannot be reached (then nothing changes).",
        formatter_class=_Formatter,
    )
    promote.add_argument("version", metavar="VERSION", help="a version shown by `models list`")
    promote.set_defaults(handler=_cmd_models_promote)
    rollback = actions.add_parser(
        "rollback",
        parents=[common],
        help="go back to the version promoted before the current one, and publish it",
        description="Publish the version promoted before the current one (see the "
        "promotion history in registry.json) to the model topic SF_TOPICS__MODELS, then "
        "record it as current; the rolled-back version leaves the history, so a second "
        "rollback goes one further back. Exit status 2 when there is no previous version, "
        "1 when Kafka cannot be reached (then nothing changes).",
        formatter_class=_Formatter,
    )
    rollback.set_defaults(handler=_cmd_models_rollback)


def _add_bench_parser(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    bench = sub.add_parser(
        "bench",
        parents=[common],
        help="run the benchmark suites (source checkout), rewrite docs/benchmarks.md",
        description="Run the benchmark suites (the same as `make bench`): each prints a "
        "table with its baselines measured in the same run and rewrites its section of "
        "docs/benchmarks.md with the command, the machine and the date. Suites that need "
        "Kafka start a local broker (or use SF_BENCH_BOOTSTRAP). Needs the source checkout "
        "(benchmarks/ and tests/ beside the package).",
        formatter_class=_Formatter,
    )
    benchmarks_main = _benchmarks()
    if benchmarks_main is not None:
        benchmarks_main.add_arguments(bench)
    bench.set_defaults(handler=_cmd_bench)


def _benchmarks() -> Any:
    """The ``benchmarks`` package's runner, from the source checkout; None without one."""
    root = Path(__file__).resolve().parents[1]
    if not (root / "benchmarks" / "__main__.py").is_file():
        return None
    if str(root) not in sys.path:
        sys.path.append(str(root))
    import benchmarks.__main__ as runner

    return runner


# -- commands --------------------------------------------------------------------------------


def _cmd_config(args: argparse.Namespace, settings: Settings) -> int:
    print(json.dumps(settings.masked(), indent=2))
    return 0


def _stop_on_signals(then: str) -> threading.Event:
    """An event set by the first SIGTERM or SIGINT (logged with ``then``: what the process
    does before it stops); a second signal stops at once."""
    import signal

    stop = threading.Event()

    def request_stop(signum: int, _frame: object) -> None:
        if stop.is_set():
            raise KeyboardInterrupt  # a second signal: stop now
        log.info("%s received: %s", signal.Signals(signum).name, then)
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    return stop


def _cmd_bench(args: argparse.Namespace, settings: Settings) -> int:
    runner = _benchmarks()
    if runner is None:
        print(
            "stream-forecaster bench: error: the benchmarks live in the source checkout "
            "(benchmarks/ beside stream_forecaster/); install it with `make install`",
            file=sys.stderr,
        )
        return EXIT_USAGE
    runner.run(args.suite or list(runner.SUITES), args.seconds, "stream-forecaster bench")
    return 0


def _cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    from prometheus_client import REGISTRY

    from stream_forecaster.monitoring.metrics import ServiceMetrics
    from stream_forecaster.serving.service import ForecastService

    stop = _stop_on_signals("finishing the batch in flight")
    return ForecastService(settings, ServiceMetrics(REGISTRY), stop).run()


def _cmd_retrain(args: argparse.Namespace, settings: Settings) -> int:
    from prometheus_client import REGISTRY

    from stream_forecaster.monitoring.metrics import RetrainMetrics
    from stream_forecaster.retraining.worker import RetrainWorker

    stop = _stop_on_signals("stopping after the step in progress")
    return RetrainWorker(settings, RetrainMetrics(REGISTRY), stop).run()


def _cmd_train(args: argparse.Namespace, settings: Settings) -> int:
    from stream_forecaster.data.tables import read_table
    from stream_forecaster.training.fit import TrainOptions, train

    features = args.features or settings.model.features
    if not features:
        raise ConfigError("no features: pass --features a,b,c or set SF_MODEL__FEATURES")
    target = args.target or settings.model.target or features[0]
    spec = _table_spec(
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
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    table = read_table(args.csv, spec)
    bundle = train(table, spec, options, source=args.csv.name, report=log.info, print_summary=print)
    out = args.out or settings.model.path
    if out.suffix != ".sfmodel" and not out.exists():
        out.mkdir(parents=True)
    written = bundle.save(out)
    metrics = bundle.manifest.training.metrics
    print(f"wrote model bundle {written} (version {bundle.version})")
    secret = settings.model.signing_secret
    if secret is not None:
        from stream_forecaster.model.folder import SIGNATURE_SUFFIX
        from stream_forecaster.model.signing import sign

        sidecar = written.with_name(written.name + SIGNATURE_SUFFIX)
        sidecar.write_text(sign(written.read_bytes(), secret.get_secret_value()) + "\n")
        print(f"signed it (SF_MODEL__SIGNING_SECRET): {sidecar}")
    print(
        f"validation MAE {metrics['val_mae']:.4f}, persistence {metrics['val_persistence_mae']:.4f}"
    )
    return 0


def _cmd_backtest(args: argparse.Namespace, settings: Settings) -> int:
    from stream_forecaster.data.tables import read_table
    from stream_forecaster.model.bundle import ModelBundle
    from stream_forecaster.training.backtest import plot_backtest, run_backtest

    bundle = ModelBundle.load(args.model or settings.model.path)
    manifest = bundle.manifest
    recorded = manifest.training.table
    for name in ("key_column", "time_column", "time_parts"):
        if getattr(args, name) is None and recorded.get(name) is not None:
            setattr(args, name, recorded[name])
    spec = _table_spec(
        args,
        features=list(manifest.features),
        target=manifest.target,
        categorical=tuple(manifest.categories),
        categories=manifest.categories,
        missing=args.missing or recorded.get("missing", "ffill"),
    )
    table = read_table(args.csv, spec)
    log.info("backtesting model %s (%s)", manifest.version, manifest.name)
    result = run_backtest(bundle, table, tail=args.tail)
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
        }
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


def _cmd_models_list(args: argparse.Namespace, settings: Settings) -> int:
    from stream_forecaster.model.registry import Registry, RegistryError

    try:
        registry = Registry(settings.model.path)
        entries = registry.entries()
        current = registry.current()
    except RegistryError as exc:
        return _models_error(args, exc)
    folder = settings.model.path
    if not entries:
        print(f"no model versions in {folder} yet")
        return 0
    if not registry.has_manifest():
        print(f"{folder} has no registry.json: its bundle files, the newest one served")
    rows = [("", "VERSION", "CREATED", "STATUS", "HOLDOUT_MAE", "REASON")]
    for entry in entries:
        mae = entry.metrics.get("holdout_mae")
        rows.append(
            (
                "*" if current is not None and entry.version == current.version else "",
                entry.version,
                entry.created_at,
                entry.status,
                "" if mae is None else f"{mae:.4f}",
                entry.reason or "",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=True)]
        print("  ".join([*cells, row[-1]]).rstrip())
    print(f"current: {current.version if current else 'none'} (* above)")
    return 0


def _cmd_models_promote(args: argparse.Namespace, settings: Settings) -> int:
    from stream_forecaster.model.registry import Registry, RegistryError

    try:
        registry = Registry(settings.model.path)
        entry = registry.entry(args.version)
        current = registry.current()
    except RegistryError as exc:
        return _models_error(args, exc)
    if entry.status == "rejected":
        log.warning("promoting %s, which was rejected: %s", entry.version, entry.reason)
    status, signature = _publish_version(args, settings, registry, entry.version)
    if status:
        return status
    registry.promote(entry.version, signature=signature)
    if current is not None and current.version == entry.version:
        print(f"{entry.version} is already current; published it again to {settings.topics.models}")
    else:
        print(
            f"promoted {entry.version} (was {current.version if current else 'none'}); "
            f"published to {settings.topics.models}"
        )
    return 0


def _cmd_models_rollback(args: argparse.Namespace, settings: Settings) -> int:
    from stream_forecaster.model.registry import Registry, RegistryError

    try:
        registry = Registry(settings.model.path)
        target = registry.previous()
        current = registry.current()
    except RegistryError as exc:
        return _models_error(args, exc)
    status, signature = _publish_version(args, settings, registry, target.version)
    if status:
        return status
    try:
        entry = registry.rollback(signature=signature)
    except RegistryError as exc:
        return _models_error(args, exc)
    print(
        f"rolled back from {current.version if current else 'none'} to {entry.version}; "
        f"published to {settings.topics.models}"
    )
    return 0


def _publish_version(
    args: argparse.Namespace, settings: Settings, registry: Registry, version: str
) -> tuple[int, str | None]:
    """Publish ``version``'s exact file bytes to the model topic, signed when a secret is set.

    Returns:
        The exit status (0, or 1 when Kafka failed; already reported) and the signature
        published with it.

    Raises:
        SignatureError: the signature recorded for it does not match (a registry file was
            swapped); it is not published.
    """
    from stream_forecaster.model.bundle import ModelBundle
    from stream_forecaster.model.signing import sign, verify
    from stream_forecaster.model.topic import ModelTopicError, publish_bundle

    entry = registry.entry(version)
    data = registry.bundle_bytes(version)
    bundle = ModelBundle.from_bytes(data, source=str(registry.path / entry.file))
    secret = settings.model.signing_secret
    signature = entry.signature
    if secret is not None:
        if signature is not None:
            # A registry file swapped for another bundle must not get signed here.
            verify(data, signature, secret.get_secret_value())
        else:
            signature = sign(data, secret.get_secret_value())
            log.info("version %s had no signature; signed it now", version)
    try:
        publish_bundle(settings, bundle, signature, data=data)
    except ModelTopicError as exc:
        print(
            f"stream-forecaster models {args.action}: error: {exc}; the registry is unchanged",
            file=sys.stderr,
        )
        return 1, signature
    return 0, signature


def _models_error(args: argparse.Namespace, exc: Exception) -> int:
    print(f"stream-forecaster models {args.action}: error: {exc}", file=sys.stderr)
    return EXIT_USAGE


def _table_spec(
    args: argparse.Namespace,
    *,
    features: Sequence[str],
    target: str,
    categorical: tuple[str, ...],
    categories: dict[str, tuple[str, ...]],
    missing: str,
) -> TableSpec:
    from stream_forecaster.data.tables import TableSpec, guess_time_columns, read_header

    time_column, time_parts = args.time_column, args.time_parts
    if time_column is None and time_parts is None:
        time_column, time_parts = guess_time_columns(read_header(args.csv))
        if time_column or time_parts:
            log.info("time from %s", time_column or ",".join(time_parts or ()))
    return TableSpec(
        features=tuple(features),
        target=target,
        time_column=time_column,
        time_parts=tuple(time_parts) if time_parts else None,
        key_column=args.key_column,
        categorical=categorical,
        categories=categories,
        missing=missing,  # type: ignore[arg-type]
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``stream-forecaster`` command; returns the exit status."""
    from stream_forecaster.data.tables import DataError
    from stream_forecaster.model.bundle import BundleError

    args = build_parser().parse_args(argv)
    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        configure_logging(args.log_level or "INFO")
        print(f"stream-forecaster: configuration error:\n{exc}", file=sys.stderr)
        return EXIT_USAGE
    configure_logging(args.log_level or settings.log_level)
    try:
        return int(args.handler(args, settings))
    except (ConfigError, DataError, BundleError) as exc:
        print(f"stream-forecaster {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"stream-forecaster {args.command}: interrupted", file=sys.stderr)
        return 130
