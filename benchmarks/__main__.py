"""Run the benchmark suites and rewrite their sections of docs/benchmarks.md.

Usage: ``make bench`` or ``python -m benchmarks [--seconds S] [--suite NAME ...]``.
"""

from __future__ import annotations

import argparse
import os

from benchmarks import hot_swap, inference, restore
from benchmarks.report import write_section


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument(
        "--seconds", type=float, default=2.0, help="measuring time per case (default 2)"
    )
    parser.add_argument(
        "--suite",
        action="append",
        choices=["inference", "restore", "hot_swap"],
        help="run only this suite (repeatable; default: all)",
    )
    args = parser.parse_args()
    suites = args.suite or ["inference", "restore", "hot_swap"]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    def progress(line: str) -> None:
        print("  " + line, flush=True)

    if "inference" in suites:
        print("== inference (progress per case)", flush=True)
        table = inference.run(args.seconds, report=progress)
        print(f"wrote {write_section('Inference', 'make bench', table)}")
    if "restore" in suites:
        print("== window state restore (real broker)", flush=True)
        table = restore.run(report=progress)
        print(f"wrote {write_section('State restore', 'make bench', table)}")
    if "hot_swap" in suites:
        print("== hot swap under load (real broker, real serve)", flush=True)
        table = hot_swap.run(report=progress)
        print(f"wrote {write_section('Hot swap', 'make bench', table)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
