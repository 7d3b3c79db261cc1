"""What the commands share: argument types, the help layout, the CSV options of `train` and
`backtest`, and stopping on SIGTERM."""

from __future__ import annotations

import argparse
import importlib.util
import logging
import math
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from stream_forecaster.settings import ConfigError

if TYPE_CHECKING:
    from stream_forecaster.data.tables import TableSpec

log = logging.getLogger("stream_forecaster")

#: The exit status of a usage or configuration error.
EXIT_USAGE = 2

_N = TypeVar("_N", int, float)


def csv_list(text: str) -> list[str]:
    """``"a, b,c"`` -> ``["a", "b", "c"]``; an empty list is an argument error."""
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list, got {text!r}")
    return items


def checked(
    convert: Callable[[str], _N], what: str, ok: Callable[[_N], bool]
) -> Callable[[str], _N]:
    """An argparse type: ``convert`` the text, then require ``ok``; the error says what was
    expected (``checked(int, "a whole number >= 1", lambda v: v >= 1)``)."""

    def parse(text: str) -> _N:
        try:
            value: _N | None = convert(text)
        except ValueError:
            value = None
        if value is None or (isinstance(value, float) and math.isnan(value)) or not ok(value):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    return parse


#: A finite number greater than 0.
positive_float = checked(float, "a number > 0", lambda v: 0 < v < math.inf)


class HelpFormatter(argparse.HelpFormatter):
    """Wraps one-paragraph texts; keeps texts with line breaks (examples) as written."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if "\n" in text:
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)


def add_table_arguments(parser: argparse.ArgumentParser) -> None:
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


def stop_on_signals(then: str, deadline_s: float) -> threading.Event:
    """An event set by the first SIGTERM or SIGINT (logged with ``then``: what the process
    does before it stops); a second signal stops at once. SIGUSR1 prints every thread's
    stack to the log (what a process that seems stuck is doing).

    Args:
        then: what the process does before it stops, for the log line.
        deadline_s: the longest shutdown: a process still running this long after the
            first signal prints every thread's stack and exits at once (status 1).
    """
    import faulthandler
    import signal

    stop = threading.Event()
    faulthandler.register(signal.SIGUSR1, all_threads=True)

    def request_stop(signum: int, _frame: object) -> None:
        if stop.is_set():
            raise KeyboardInterrupt  # a second signal: stop now
        log.info("%s received: %s", signal.Signals(signum).name, then)
        stop.set()
        watchdog = threading.Timer(deadline_s, _overdue, args=(deadline_s,))
        watchdog.daemon = True
        watchdog.start()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    return stop


def _overdue(deadline_s: float) -> None:
    """The shutdown took longer than its deadline: say where it is stuck, and exit."""
    import faulthandler
    import os

    log.error(
        "did not stop within %.0fs of the signal (SF_PROCESSING__SHUTDOWN_TIMEOUT_S); "
        "exiting now; every thread's stack follows",
        deadline_s,
    )
    faulthandler.dump_traceback(all_threads=True)
    os._exit(1)


def table_spec(
    args: argparse.Namespace,
    *,
    features: Sequence[str],
    target: str,
    categorical: tuple[str, ...],
    categories: dict[str, tuple[str, ...]],
    missing: str,
) -> TableSpec:
    from stream_forecaster.data.tables import TableSpec, guess_time_columns, read_header

    if target not in features:  # serve reads the target's last value from each window
        raise ConfigError(
            f"the target {target!r} is not one of the features {','.join(features)}: the "
            "model reads the target's past values too; add it to --features (or "
            "SF_MODEL__FEATURES)"
        )
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


def require_training(command: str) -> None:
    """Fail with one line when the training libraries (the ``[train]`` extra) are missing.

    Raises:
        ConfigError: TensorFlow or Keras is not installed.
    """
    missing = [name for name in ("tensorflow", "keras") if importlib.util.find_spec(name) is None]
    if missing:
        raise ConfigError(
            f"`stream-forecaster {command}` trains models and needs {' and '.join(missing)}, "
            "which this install lacks; install the training extra: "
            "pip install 'stream-forecaster[train]'"
        )
