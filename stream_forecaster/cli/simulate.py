"""``stream-forecaster simulate``: a sensor feed that replays real data into the input
topic."""

from __future__ import annotations

import argparse
from pathlib import Path

from stream_forecaster.cli.arguments import checked, csv_list, positive_float
from stream_forecaster.settings import Settings

_DESCRIPTION = """\
Send sensor readings to the input topic (SF_TOPICS__INPUT) as a live feed: real data
replayed from CSV files, or synthetic series. Readings go out in time order, interleaved
across keys. Each reading's ts is the data's own time, by default shifted so that the
first reading is now (keeping the data's regular spacing); the Kafka record timestamp is
the wall clock at send, which the forecaster's end-to-end latency is measured from.
Progress is logged every 5 s.
"""


_EPILOG = """\
examples:
  stream-forecaster simulate                          # Beijing as 4 stations, 50 readings/s
  stream-forecaster simulate --speedup 3600 --loop    # an hour of data per second, forever
  stream-forecaster simulate --source energy --rate 200 --bad-ratio 0.01
  stream-forecaster simulate --source csv --csv plant.csv --key-column sensor --features t,rh
  stream-forecaster simulate --source synthetic --keys 100 --interval-ms 1000 --rate 1000

Exit status: 0 when every record was delivered (also after Ctrl-C or SIGTERM, which stop
cleanly and flush), 1 when sends failed, 2 for bad options, settings or data.
"""


def add_parser(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    p = sub.add_parser(
        "simulate",
        parents=[common],
        help="replay real (or synthetic) sensor data into the input topic as a live feed",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    count = checked(int, "a whole number >= 1", lambda v: v >= 1)
    positive = positive_float
    data = p.add_argument_group("the data").add_argument
    data(
        "--source",
        choices=["beijing", "energy", "csv", "synthetic"],
        default="beijing",
        help="beijing (default): hourly PM2.5 and weather, as --keys stations; energy: a "
        "house's 9 rooms every 10 min (features T, RH, T_out, RH_out, Press_mm_hg, "
        "Windspeed); csv: any CSV (--csv); synthetic: daily sinusoids plus noise",
    )
    data(
        "--csv",
        type=Path,
        metavar="FILE",
        help="CSV file to replay (required for --source csv; beijing and energy default "
        "to the sample files shipped with the package)",
    )
    data(
        "--keys",
        type=count,
        metavar="N",
        help="number of series keys: beijing stations (default 4), energy rooms (default "
        "and at most 9), synthetic keys (default 4)",
    )
    data(
        "--shift-hours",
        type=checked(int, "a whole number >= 0", lambda v: v >= 0),
        metavar="H",
        help="beijing: station k sends the values of k*H rows (hours) later, wrapping "
        "around, at the same times as station 0 (default 168, a week)",
    )
    data(
        "--model",
        type=Path,
        metavar="BUNDLE",
        help="model bundle (file or folder) whose features and category codes to follow "
        "(default: the bundle at SF_MODEL__PATH, if there is one whose features fit)",
    )
    data(
        "--features",
        type=csv_list,
        metavar="A,B,C",
        help="csv: feature columns (default: SF_MODEL__FEATURES, else the bundle's); "
        "synthetic: feature names (default value,aux)",
    )
    data(
        "--key-column",
        metavar="COLUMN",
        help="csv: column naming each row's series key (default: one series, keyed by "
        "the file name)",
    )
    data(
        "--time-column",
        metavar="COLUMN",
        help="csv: column of epoch milliseconds or date-times, naive = UTC (default: the "
        "first of ts, timestamp, time, date, datetime)",
    )
    data(
        "--time-parts",
        type=csv_list,
        metavar="COLS",
        help="csv: columns that make up the time, e.g. year,month,day,hour (default "
        "when no time column is found and these four exist)",
    )
    data(
        "--categorical",
        type=csv_list,
        metavar="A,B",
        help="csv: text columns sent as category codes, in the bundle's order, else "
        "sorted (default: the bundle's categorical features)",
    )
    data(
        "--interval-ms",
        type=count,
        metavar="MS",
        help="synthetic: milliseconds between a key's readings (default 60000)",
    )
    data("--seed", type=int, help="synthetic: random seed, same seed same data (default 0)")
    timing = p.add_argument_group("timing")
    timing.add_argument(
        "--timestamps",
        choices=["live", "shifted", "original"],
        default="live",
        help="live (default): each reading stamped with the time it is sent at, so a "
        "second run goes on where the first stopped; shifted: the data's times moved so "
        "that the first reading is now, their spacing kept (a replay faster than real "
        "time runs ahead of the clock: serve refuses readings more than "
        "SF_WINDOWS__MAX_FUTURE_MS ahead); original: the data's own times",
    )
    pace = timing.add_mutually_exclusive_group()
    pace.add_argument(
        "--rate",
        type=positive,
        metavar="R",
        help="readings per second, all keys together (default 50)",
    )
    pace.add_argument(
        "--speedup",
        type=positive,
        metavar="X",
        help="pace by data time instead: data seconds per wall second (3600: an hour per second)",
    )
    timing.add_argument(
        "--limit",
        type=count,
        metavar="N",
        help="stop after N records (default: the whole data once; with --loop, never)",
    )
    timing.add_argument(
        "--loop",
        action="store_true",
        help="replay the data again and again; times keep advancing by the data's span, "
        "never repeating",
    )
    records = p.add_argument_group("the records")
    records.add_argument(
        "--bad-ratio",
        type=checked(float, "a share in [0, 1]", lambda v: 0 <= v <= 1),
        default=0.0,
        metavar="P",
        help="replace this share of records, spread evenly, by malformed ones (kinds in "
        "rotation, one for each rejection reason) to exercise the dead-letter path (default 0)",
    )
    records.add_argument("--topic", help="topic to send to (default: SF_TOPICS__INPUT)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Replay the feed into the input topic."""
    from stream_forecaster.simulate.replay import replay

    return replay(args, settings)
