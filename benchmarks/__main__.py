"""Run the benchmark suites and rewrite their sections of docs/benchmarks.md.

Usage: ``make bench`` or ``python -m benchmarks [--seconds S]``.
"""

from __future__ import annotations

import argparse
import os

from benchmarks import inference
from benchmarks.report import write_section


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument(
        "--seconds", type=float, default=2.0, help="measuring time per case (default 2)"
    )
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    print("== inference (progress per case)", flush=True)
    table = inference.run(args.seconds, report=lambda line: print("  " + line, flush=True))
    path = write_section("Inference", "make bench", table)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
