"""Run the benchmark suites and rewrite their sections of docs/benchmarks.md.

Usage: ``make bench``, ``stream-forecaster bench`` or
``python -m benchmarks [--seconds S] [--suite NAME ...]``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from benchmarks.report import write_section

#: name -> (section title in docs/benchmarks.md, what it measures)
SUITES: dict[str, tuple[str, str]] = {
    "inference": ("Inference", "forecasts/s per batch size against the arithmetic bound"),
    "end_to_end": ("End to end", "one serve on the real broker against its baselines"),
    "memory": ("Memory", "resident memory per active key at 100,000 and 1,000,000 keys"),
    "restore": ("State restore", "restoring 100,000 windows from the changelog"),
    "hot_swap": ("Hot swap", "latency while serve swaps models under load"),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``python -m benchmarks`` (also ``stream-forecaster bench``)."""
    parser.add_argument(
        "--seconds",
        type=float,
        default=2.0,
        help="inference suite: measuring time per case (default 2)",
    )
    parser.add_argument(
        "--suite",
        action="append",
        choices=list(SUITES),
        help="run only this suite (repeatable; default: all). "
        + "; ".join(f"{name}: {what}" for name, (_, what) in SUITES.items()),
    )


def run(suites: Sequence[str], seconds: float, command: str) -> None:
    """Run ``suites`` in order, printing progress, and rewrite their sections."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    def progress(line: str) -> None:
        print("  " + line, flush=True)

    for n, name in enumerate(suites, 1):
        title, what = SUITES[name]
        print(f"== [{n}/{len(suites)}] {name}: {what}", flush=True)
        table = _runner(name, seconds)(progress)
        print(table, flush=True)
        print(f"wrote {write_section(title, command, table)}", flush=True)


def _runner(name: str, seconds: float) -> Callable[[Callable[[str], None]], str]:
    from benchmarks import end_to_end, hot_swap, inference, memory, restore

    runners: dict[str, Callable[[Callable[[str], None]], str]] = {
        "inference": lambda report: inference.run(seconds, report=report),
        "end_to_end": lambda report: end_to_end.run(report=report),
        "memory": lambda report: memory.run(report=report),
        "restore": lambda report: restore.run(report=report),
        "hot_swap": lambda report: hot_swap.run(report=report),
    }
    return runners[name]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    add_arguments(parser)
    args = parser.parse_args(argv)
    given = list(sys.argv[1:] if argv is None else argv)
    command = "python -m benchmarks " + " ".join(given) if given else "make bench"
    run(args.suite or list(SUITES), args.seconds, command.strip())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
