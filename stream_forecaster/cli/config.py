"""``stream-forecaster config``: the effective configuration, secrets masked."""

from __future__ import annotations

import argparse
import json

from stream_forecaster.settings import Settings


def add_parser(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    config = sub.add_parser(
        "config",
        parents=[common],
        help="print the effective configuration (secrets masked)",
        description="Print the effective configuration as JSON, secrets masked. Fails, "
        "naming the setting, when a value is invalid.",
    )
    config.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    print(json.dumps(settings.masked(), indent=2))
    return 0
