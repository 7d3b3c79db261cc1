"""``stream-forecaster bench``: the benchmark suites, which live in a source checkout.

The benchmarks are not part of the package (they start a broker and compare against
peers): from a checkout this runs ``python -m benchmarks`` there; from an install it says
how to get one.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from stream_forecaster.cli.arguments import EXIT_USAGE, HelpFormatter
from stream_forecaster.settings import Settings

#: The checkout this package was installed from in development mode, if it is one.
CHECKOUT = Path(__file__).resolve().parents[2]


def add_parser(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    bench = sub.add_parser(
        "bench",
        parents=[common],
        help="run the benchmark suites (source checkout), rewrite docs/benchmarks.md",
        description="Run the benchmark suites, as `make bench` does: each prints a table with "
        "its baselines measured in the same run and rewrites its section of "
        "docs/benchmarks.md with the command, the machine and the date. The benchmarks live "
        "in the source checkout (benchmarks/), not in the package: from an installed wheel "
        "this says how to run them. Options after the command go to `python -m benchmarks` "
        "(see `python -m benchmarks --help`).",
        epilog="examples:\n  stream-forecaster bench\n"
        "  stream-forecaster bench --suite inference --seconds 1",
        formatter_class=HelpFormatter,
    )
    bench.add_argument(
        "options",
        nargs=argparse.REMAINDER,
        help="options of python -m benchmarks (--suite NAME, --seconds S)",
    )
    bench.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    if not (CHECKOUT / "benchmarks" / "__main__.py").is_file():
        print(
            "stream-forecaster bench: error: the benchmarks are not installed with the "
            "package; clone the repository and run `make bench` (or `python -m benchmarks`) "
            "in it",
            file=sys.stderr,
        )
        return EXIT_USAGE
    command = [sys.executable, "-m", "benchmarks", *args.options]
    return subprocess.run(command, cwd=CHECKOUT, check=False).returncode
